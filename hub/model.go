package hub

import (
	"strconv"
	"time"
)

// OrgKind tells an authority (myndighed) from a company (virksomhed).
type OrgKind string

const (
	Authority OrgKind = "AUTHORITY"
	Company   OrgKind = "COMPANY"
)

// Setup is how an organisation receives its post.
type Setup string

const (
	// SetupContactable: has a contact structure; implies system retrieval.
	SetupContactable Setup = "CONTACTABLE"
	// SetupSystemRetrieval: receiver systems fetch its post, no contact structure.
	SetupSystemRetrieval Setup = "SYSTEM_RETRIEVAL"
	// SetupMailboxOnly: post stays in the mailbox for viewing clients.
	SetupMailboxOnly Setup = "MAILBOX_ONLY"
)

// Organisation is an authority or a company, identified by its CVR number.
type Organisation struct {
	CVR     string    `json:"cvr"`
	Name    string    `json:"name"`
	Kind    OrgKind   `json:"kind"`
	Setup   Setup     `json:"setup"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Version int64     `json:"version"`
	Active  bool      `json:"active"`
	// SendFor lists other organisations' CVRs this one may send on behalf of
	// (an IT vendor or a shared service centre).
	SendFor []string `json:"sendFor,omitempty"`
}

// SystemRole says whether a system sends or receives post.
type SystemRole string

const (
	SenderSystem    SystemRole = "SENDER"
	RecipientSystem SystemRole = "RECIPIENT"
	// ViewerSystem is a viewing client acting for citizens/company users.
	ViewerSystem SystemRole = "VIEWER"
)

// MailboxKind distinguishes an authority's two mailboxes.
type MailboxKind string

const (
	// AuthorityPost is myndighedspost: addressed to the organisation as an authority.
	AuthorityPost MailboxKind = "AUTHORITY_POST"
	// CVRPost is virksomhedspost: addressed to the CVR as a company (every company's only mailbox).
	CVRPost MailboxKind = "CVR_POST"
)

// Protocol is how a receiver system gets its post.
type Protocol string

const (
	RestPull Protocol = "REST_PULL"
	RestPush Protocol = "REST_PUSH"
)

// System is a registered sender, receiver or viewer system of one organisation.
type System struct {
	ID      string      `json:"id"`
	OrgCVR  string      `json:"organisation"`
	Name    string      `json:"name"`
	Role    SystemRole  `json:"role"`
	Mailbox MailboxKind `json:"mailbox,omitempty"` // receivers only
	Default bool        `json:"default"`           // the default authority-post receiver
	// Protocol, Endpoint and ReceiptEndpoint describe delivery to receivers.
	Protocol        Protocol `json:"protocol,omitempty"`
	Endpoint        string   `json:"endpoint,omitempty"`
	ReceiptEndpoint string   `json:"receiptEndpoint,omitempty"`
	// MemoVersion is the MeMo version a receiver wants ("1.1" or "1.2").
	MemoVersion string `json:"memoVersion,omitempty"`
	// TokenHash is the SHA-256 (hex) of the system's API token. Tokens are
	// 256-bit random values, so a fast hash is enough and allows lookup.
	TokenHash string `json:"-"`
	// CertFingerprint is the SHA-256 (hex) of an optional client certificate.
	CertFingerprint string    `json:"certificateFingerprint,omitempty"`
	Active          bool      `json:"active"`
	Created         time.Time `json:"created"`
	Updated         time.Time `json:"updated"`
	// LastFetch is when the system last fetched or acknowledged post.
	LastFetch time.Time `json:"lastFetch,omitempty"`
	Version   int64     `json:"version"`
}

// ContactGroup groups contact points in an organisation's contact structure.
type ContactGroup struct {
	ID       string    `json:"id"`
	OrgCVR   string    `json:"organisation"`
	Name     string    `json:"name"`
	ParentID string    `json:"parentId,omitempty"`
	Created  time.Time `json:"created"`
	Version  int64     `json:"version"`
}

// CodeType is the kind of a contact-point code.
type CodeType string

const (
	CodeKLE    CodeType = "KLE"
	CodeFORM   CodeType = "FORM"
	CodeGLN    CodeType = "GLN"
	CodeSOR    CodeType = "SOR"
	CodeCustom CodeType = "CUSTOM"
)

// ContactPointCode is one code that routes post to a contact point.
type ContactPointCode struct {
	Type CodeType `json:"type"`
	Code string   `json:"code"`
}

// ContactPoint is an addressable unit of an organisation; post addressed to
// it goes to exactly one receiver system.
type ContactPoint struct {
	ID       string             `json:"id"`
	OrgCVR   string             `json:"organisation"`
	Name     string             `json:"name"`
	GroupIDs []string           `json:"contactGroups,omitempty"`
	SystemID string             `json:"systemId"`
	Codes    []ContactPointCode `json:"contactPointCodes,omitempty"`
	// SizeThresholdMB, when > 0, is the largest MeMo the point accepts.
	SizeThresholdMB float64 `json:"memoSizeThresholdMB,omitempty"`
	// AttachmentLimit, when > 0, is the most additional documents accepted.
	AttachmentLimit int       `json:"allowedNumberOfAttachments,omitempty"`
	Active          bool      `json:"active"`
	Visible         bool      `json:"visible"`
	Created         time.Time `json:"created"`
	Version         int64     `json:"version"`
}

// RoutingRule sends post matching attention/content data to a system.
// Rules are tried in ascending Priority; the first match wins.
type RoutingRule struct {
	ID       string `json:"id"`
	OrgCVR   string `json:"organisation"`
	Priority int    `json:"priority"`
	// Field is what the rule looks at: "KLE", "FORM", "CaseID", "GLN",
	// "SOR", "messageCode", "label". Value is matched exactly, or as a
	// prefix when it ends in "*".
	Field    string    `json:"field"`
	Value    string    `json:"value"`
	SystemID string    `json:"systemId"`
	Created  time.Time `json:"created"`
}

// DigitalStatus is a party's standing in the contact register.
type DigitalStatus string

const (
	Registered DigitalStatus = "REGISTERED"
	Exempt     DigitalStatus = "EXEMPT" // fritaget: gets physical post
)

// Contact is a CPR or CVR entry of the contact register (kontaktregister).
type Contact struct {
	ID      string        `json:"id"` // CPR (10 digits) or CVR (8 digits)
	Status  DigitalStatus `json:"digitalPost"`
	NemSMS  bool          `json:"nemSms"`
	Email   string        `json:"email,omitempty"`
	Phone   string        `json:"phone,omitempty"`
	Name    string        `json:"name,omitempty"`
	Address []string      `json:"address,omitempty"` // the recipient's postal lines in the letter (AttentionData), for print where the register has none
	Updated time.Time     `json:"updated"`
}

// Channel is where a delivery goes.
type Channel string

const (
	ChannelMailbox Channel = "MAILBOX" // a citizen's or organisation's mailbox, read by viewing clients
	ChannelSystem  Channel = "SYSTEM"  // a receiver system of the recipient organisation
	ChannelPrint   Channel = "PRINT"   // the physical print queue
	ChannelSMS     Channel = "SMS"     // the NemSMS outbox
)

// MessageState is the life of an accepted message.
type MessageState string

const (
	MessageActive   MessageState = "ACTIVE"
	MessageHeld     MessageState = "HELD" // doNotDeliverUntilDate in the future
	MessageRecalled MessageState = "RECALLED"
	// MessageNotDelivered: accepted but undeliverable (e.g. digital-only
	// to an exempt recipient); the receipt says why.
	MessageNotDelivered MessageState = "NOT_DELIVERED"
)

// Message is an accepted MeMo's metadata. Its bytes are in Blobs under
// ContentKey, or inline in Content when small.
type Message struct {
	UUID           string       `json:"messageUUID"`
	MessageID      string       `json:"messageId,omitempty"`
	SenderCVR      string       `json:"senderCvr"`
	SenderSystemID string       `json:"senderSystemId"`
	RecipientID    string       `json:"recipientId"`
	RecipientType  string       `json:"recipientType"` // "CPR" or "CVR"
	MessageType    string       `json:"messageType"`   // DIGITALPOST, NEMSMS
	MemoVersion    string       `json:"memoVersion"`
	Label          string       `json:"label,omitempty"`
	SHA256         string       `json:"sha256"`
	Size           int64        `json:"size"`
	ContentKey     string       `json:"-"`
	Content        []byte       `json:"-"`
	Received       time.Time    `json:"received"`
	NotBefore      time.Time    `json:"notBefore,omitempty"`
	State          MessageState `json:"state"`
	Mode           string       `json:"mode"` // delivery mode chosen by the sender
	// ArchiveUntil, when set, keeps a copy in the sender's sent-archive.
	ArchiveUntil time.Time `json:"archiveUntil,omitempty"`
	// Attrs holds routing and statistics attributes read from the MeMo
	// (KLE, FORM, CaseID, contactPoint, postType…).
	Attrs map[string]string `json:"attrs,omitempty"`
	// ReceiptID is the TransmissionID of the receipt issued when the
	// message was accepted. A system may hold other receipts naming the
	// UUID (the INVALID receipt of a refused submission of it with other
	// bytes, newer than this one), so the message's own receipt is found
	// by this id, not by the UUID. "" for messages stored before the field.
	ReceiptID string `json:"receiptId,omitempty"`
	// TransactionID is the sender's id of the call that submitted it
	// (SF1601's X-TransaktionsId), as its receipt names it.
	TransactionID string `json:"transactionId,omitempty"`
	// ReasonCode and Reason say why a NOT_DELIVERED message was not
	// delivered, as its receipt's errorCode and errorMessage do.
	ReasonCode string `json:"reasonCode,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// DeliveryState is the state of one delivery.
type DeliveryState string

const (
	// DeliveryReady: waiting to be fetched/drained (or readable in a mailbox).
	DeliveryReady DeliveryState = "READY"
	// DeliveryParked: gave up after too many failed attempts; needs an admin.
	DeliveryParked DeliveryState = "PARKED"
)

// Delivery is one destination of a message. Acknowledged deliveries are
// removed (empty-on-fetch), so there is no "done" state.
type Delivery struct {
	// ID is unique; by convention "<messageUUID>/<channel>/<target>".
	ID          string  `json:"id"`
	MessageUUID string  `json:"messageUUID"`
	Channel     Channel `json:"channel"`
	// Queue groups deliveries drained together: "system/<systemID>",
	// "mailbox/<partyID>/<MailboxKind>", "print", "sms".
	Queue string `json:"queue"`
	// OrgCVR is the recipient organisation for system and organisation
	// mailbox deliveries, "" for citizens' post, print and SMS.
	OrgCVR   string `json:"organisation,omitempty"`
	SystemID string `json:"systemId,omitempty"`
	// Seq orders a queue by arrival; assigned by the store, increasing.
	Seq     int64     `json:"seq"`
	Created time.Time `json:"created"`
	// AvailableAt holds the delivery until then (doNotDeliverUntilDate).
	AvailableAt time.Time     `json:"availableAt"`
	State       DeliveryState `json:"state"`
	Attempts    int           `json:"attempts"`
	Size        int64         `json:"size"`
	// Meta carries what the drainer needs (print address, SMS text and phone).
	Meta map[string]string `json:"meta,omitempty"`
}

// Lease is a time-limited exclusive claim on a delivery.
type Lease struct {
	DeliveryID string    `json:"deliveryId"`
	Holder     string    `json:"holder"`
	Epoch      int64     `json:"epoch"`
	Expires    time.Time `json:"expires"`
	// Attempt is the number of the attempt this lease starts (1-based).
	Attempt int `json:"attempt"`
}

// Token returns the lease's opaque token "<deliveryID>#<epoch>".
func (l Lease) Token() string { return l.DeliveryID + "#" + strconv.FormatInt(l.Epoch, 10) }

// ReceiptStatus is a sender receipt status as in NgDP.
type ReceiptStatus string

const (
	ReceiptNotAllowed ReceiptStatus = "NOT_ALLOWED"
	ReceiptInvalid    ReceiptStatus = "INVALID"
	ReceiptReceived   ReceiptStatus = "RECEIVED"
	ReceiptCompleted  ReceiptStatus = "COMPLETED"
)

// Receipt is what a sender system reads back about one submission (JSON;
// the SF1601 façade also answers it as XML).
type Receipt struct {
	TransmissionID string        `json:"transmissionId" xml:"transmissionId"`
	SystemID       string        `json:"-" xml:"-"` // the sender system it belongs to
	MessageUUID    string        `json:"messageUUID" xml:"messageUUID"`
	MessageID      string        `json:"messageId,omitempty" xml:"messageId,omitempty"`
	ErrorCode      string        `json:"errorCode,omitempty" xml:"errorCode,omitempty"`
	ErrorMessage   string        `json:"errorMessage,omitempty" xml:"errorMessage,omitempty"`
	Time           time.Time     `json:"timeStamp" xml:"timeStamp"`
	Status         ReceiptStatus `json:"receiptStatus" xml:"receiptStatus"`
	// TransactionID is the sender's id of the call that submitted the
	// message (SF1601's X-TransaktionsId), when it gave one.
	TransactionID string `json:"transactionId,omitempty" xml:"transactionId,omitempty"`
}

// Event is one entry of the event log. Pending events have Seq 0 and no
// hashes; sealed events have a gap-free Seq and a hash chained over the
// previous one.
type Event struct {
	ID    string    `json:"id"` // unique, assigned when the event is created
	Time  time.Time `json:"eventTime"`
	Tag   string    `json:"eventTag"`
	Actor string    `json:"actor,omitempty"`
	// Orgs are the organisations (CVR) the event concerns; visibility rests on it.
	Orgs        []string          `json:"organisations,omitempty"`
	SystemID    string            `json:"systemId,omitempty"`
	MessageUUID string            `json:"messageUUID,omitempty"`
	Party       string            `json:"party,omitempty"` // the CPR/CVR recipient, when any
	Detail      map[string]string `json:"detail,omitempty"`
	Seq         uint64            `json:"seq,omitempty"`
	PrevHash    string            `json:"prevHash,omitempty"`
	Hash        string            `json:"hash,omitempty"`
}

// EventQuery filters sealed events. Zero fields do not filter.
type EventQuery struct {
	Org         string    // events whose Orgs contain it
	From, To    time.Time // Time in [From, To): From inclusive, To exclusive
	Tags        []string
	SystemID    string
	MessageUUID string
	Party       string
	Actor       string
	AfterSeq    uint64 // cursor: only Seq > AfterSeq
	Limit       int
	Descending  bool
}

// CounterKey identifies one statistics cell.
type CounterKey struct {
	Org         string `json:"organisation"`
	Day         string `json:"day"` // YYYY-MM-DD in Danish time (DanishDay); UTC before this was so
	MessageType string `json:"messageType"`
	Channel     string `json:"channel"`
	SystemID    string `json:"systemId,omitempty"`
	Direction   string `json:"direction"` // SENT or RECEIVED
	// SizeBucket is a coarse size class: "<100K", "<1M", "<10M", ">=10M".
	SizeBucket string `json:"sizeBucket,omitempty"`
}

// Counter is one statistics cell's value.
type Counter struct {
	Key   CounterKey `json:"key"`
	Count int64      `json:"count"`
	Bytes int64      `json:"bytes"`
}

// CounterQuery selects counters of one organisation (or all, for "") over
// a day range (inclusive, YYYY-MM-DD).
type CounterQuery struct {
	Org     string
	FromDay string
	ToDay   string
}

// PolicyLine is one casbin policy line: Ptype ("p", "g", "g2"…) and values.
type PolicyLine struct {
	Ptype string   `json:"ptype"`
	V     []string `json:"v"`
}

// Key returns a stable identity for the line.
func (p PolicyLine) Key() string {
	k := p.Ptype
	for _, v := range p.V {
		k += "\x1f" + v
	}
	return k
}

// User is a human account of the admin portal or a viewing client.
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	// Org is the organisation the account belongs to: the one whose
	// administrator (or the operator, for it) created it. Only that
	// organisation's user administrators grant it privileges; "" for an
	// account created outside an organisation (bootstrap, demo) or before
	// accounts recorded it.
	Org          string    `json:"organisation,omitempty"`
	PasswordHash string    `json:"-"`
	Created      time.Time `json:"created"`
	Active       bool      `json:"active"`
}
