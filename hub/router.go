package hub

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Mode is the sender's choice of delivery channel, in the style of
// SF1601's KombiValgKode.
type Mode string

const (
	// ModeAutomatic delivers digitally, else (exempt recipient) by print.
	ModeAutomatic Mode = "AUTOMATIC"
	// ModeDigitalOnly delivers digitally or not at all; the receipt says why.
	ModeDigitalOnly Mode = "DIGITAL"
	// ModePrintOnly always prints.
	ModePrintOnly Mode = "PRINT"
	// ModeNemSMS sends the notification text as an SMS.
	ModeNemSMS Mode = "NEMSMS"
)

// ParseMode reads a mode from a request parameter: the constants above or
// SF1601's Danish names ("Automatisk Valg", "Digital Post", "Fysisk Post",
// "NemSMS"), case-insensitively; "" is automatic.
func ParseMode(s string) (Mode, error) {
	switch strings.ToUpper(strings.Join(strings.Fields(s), " ")) {
	case "", "AUTOMATIC", "AUTOMATISK VALG", "AUTOMATISK":
		return ModeAutomatic, nil
	case "DIGITAL", "DIGITAL POST", "DIGITAL_ONLY":
		return ModeDigitalOnly, nil
	case "PRINT", "FYSISK POST", "PRINT_ONLY", "PHYSICAL":
		return ModePrintOnly, nil
	case "NEMSMS", "SMS":
		return ModeNemSMS, nil
	}
	return "", &Error{Code: Invalid, Message: "unknown delivery mode",
		Fields: []FieldError{{Resource: "request", Field: "mode", Code: "mode.unknown",
			Message: "mode must be AUTOMATIC, DIGITAL, PRINT or NEMSMS", RejectedValue: s}}}
}

func modeMismatch(mode Mode, msg string) error {
	return &Error{Code: Invalid, Message: "the delivery mode does not fit the MeMo's messageType",
		Fields: []FieldError{{Resource: "request", Field: "mode", Code: "mode.message.type.mismatch", Message: msg, RejectedValue: string(mode)}}}
}

// Letter is what routing needs to know about a validated MeMo; the HTTP
// layer fills it from the parsed message.
type Letter struct {
	UUID          string
	MessageID     string
	MessageType   string // DIGITALPOST, NEMSMS…
	MemoVersion   string
	Label         string
	SenderID      string // sender CVR
	RecipientID   string
	RecipientType string // CPR or CVR
	PostType      string
	ContactPoint  string // Recipient/ContactPoint/contactPointID
	Notification  string
	NotBefore     time.Time // doNotDeliverUntilDate (zero: none)
	Size          int64
	Attachments   int // additional documents
	// Attrs are routing attributes from attention and content data:
	// "KLE", "FORM", "CaseID", "GLN", "SOR", "messageCode".
	Attrs map[string]string
	// Address is the recipient's postal address from the MeMo, if any.
	Address []string
	// PrintAddress is the address on the sender's own print rendition
	// (Envelope.PrintAddress): where that paper goes, when it is printed.
	PrintAddress []string
}

// Route is the router's decision for one letter.
type Route struct {
	Deliveries []Delivery
	// State is MessageActive, MessageHeld or MessageNotDelivered.
	State MessageState
	// Reason explains a MessageNotDelivered decision (receipt errorMessage).
	Reason     string
	ReasonCode string
}

// Router designates every message to its destination(s).
type Router struct {
	Store Store
}

// Route decides where a letter goes. Routing failures that are the
// sender's fault (a contact point that does not exist, a letter too big for
// its contact point) are Invalid errors; an undeliverable letter (digital
// only to an exempt citizen) is a Route with State MessageNotDelivered.
func (r *Router) Route(ctx context.Context, l Letter, mode Mode, now time.Time) (Route, error) {
	if mode == "" {
		mode = ModeAutomatic
	}
	// A NemSMS carries a notification and no documents, so the two go
	// together: a letter sent by SMS would reach nobody's mailbox, and an
	// SMS cannot be printed or put in one.
	if sms := strings.EqualFold(l.MessageType, "NEMSMS"); sms && mode != ModeAutomatic && mode != ModeNemSMS {
		return Route{}, modeMismatch(mode, "a MeMo of messageType NEMSMS is sent by SMS: send it with mode NEMSMS or AUTOMATIC")
	} else if !sms && mode == ModeNemSMS {
		return Route{}, modeMismatch(mode, "only a MeMo of messageType NEMSMS is sent by SMS; a "+l.MessageType+" has documents for a mailbox, a system or print")
	} else if sms {
		mode = ModeNemSMS
	}
	var rt Route
	var err error
	switch {
	case mode == ModeNemSMS:
		rt, err = r.routeSMS(ctx, l)
	case mode == ModePrintOnly:
		rt, err = r.routePrint(ctx, l)
	case l.RecipientType == "CVR":
		rt, err = r.routeOrg(ctx, l, mode)
	default:
		rt, err = r.routeCitizen(ctx, l, mode)
	}
	if err != nil {
		return Route{}, err
	}
	if rt.State == "" {
		rt.State = MessageActive
	}
	avail := now
	if !l.NotBefore.IsZero() && l.NotBefore.After(now) {
		avail = l.NotBefore
		if rt.State == MessageActive {
			rt.State = MessageHeld
		}
	}
	for i := range rt.Deliveries {
		d := &rt.Deliveries[i]
		d.MessageUUID = l.UUID
		d.Created = now
		d.AvailableAt = avail
		d.State = DeliveryReady
		d.Size = l.Size
		d.ID = DeliveryID(l.UUID, d.Queue)
	}
	return rt, nil
}

// DeliveryID is the conventional id of a message's delivery to a queue.
func DeliveryID(messageUUID, queue string) string { return messageUUID + "@" + queue }

// MailboxQueue names the queue of a party's mailbox. Citizens have one
// mailbox (kind ""), organisations one per MailboxKind.
func MailboxQueue(party string, kind MailboxKind) string {
	if kind == "" {
		return "mailbox/" + party
	}
	return "mailbox/" + party + "/" + string(kind)
}

// SystemQueue names a receiver system's queue.
func SystemQueue(systemID string) string { return "system/" + systemID }

// Queues of the print and SMS outboxes.
const (
	PrintQueue = "print"
	SMSQueue   = "sms"
)

func notDelivered(code, reason string) Route {
	return Route{State: MessageNotDelivered, ReasonCode: code, Reason: reason}
}

func (r *Router) lookupContact(ctx context.Context, id string) (Contact, bool, error) {
	c, err := r.Store.GetContact(ctx, id)
	if ErrorCode(err) == NotFound {
		return Contact{ID: id, Status: Registered}, false, nil
	}
	return c, err == nil, err
}

func (r *Router) routeCitizen(ctx context.Context, l Letter, mode Mode) (Route, error) {
	c, _, err := r.lookupContact(ctx, l.RecipientID)
	if err != nil {
		return Route{}, err
	}
	if c.Status == Exempt {
		if mode == ModeDigitalOnly {
			return notDelivered("recipient.exempt", "the recipient is exempt from Digital Post and the sender chose digital delivery only"), nil
		}
		return r.routePrint(ctx, l)
	}
	return Route{Deliveries: []Delivery{{Channel: ChannelMailbox, Queue: MailboxQueue(l.RecipientID, "")}}}, nil
}

func (r *Router) routePrint(ctx context.Context, l Letter) (Route, error) {
	c, _, err := r.lookupContact(ctx, l.RecipientID)
	if err != nil {
		return Route{}, err
	}
	// The sender's own print rendition is printed with its address on
	// it. Otherwise the register's address is the recipient's; the
	// letter's own (Recipient/AttentionData) is used only where the
	// register has none.
	addr, source := l.PrintAddress, "rendition"
	if len(addr) == 0 {
		addr, source = c.Address, "register"
	}
	if len(addr) == 0 {
		addr, source = l.Address, "letter"
	}
	if len(addr) == 0 {
		return notDelivered("recipient.address.unknown", "physical print needs a postal address, and neither the message nor the contact register has one"), nil
	}
	meta := map[string]string{"address": strings.Join(addr, "\n"), "addressSource": source, "recipient": l.RecipientID}
	if c.Name != "" {
		meta["name"] = c.Name
	}
	return Route{Deliveries: []Delivery{{Channel: ChannelPrint, Queue: PrintQueue, Meta: meta}}}, nil
}

func (r *Router) routeSMS(ctx context.Context, l Letter) (Route, error) {
	if l.RecipientType != "CPR" {
		return notDelivered("nemsms.recipient.not.citizen", "NemSMS can only be sent to citizens (CPR)"), nil
	}
	c, found, err := r.lookupContact(ctx, l.RecipientID)
	if err != nil {
		return Route{}, err
	}
	if !found || !c.NemSMS || c.Phone == "" {
		return notDelivered("nemsms.not.registered", "the recipient is not registered for NemSMS"), nil
	}
	if strings.TrimSpace(l.Notification) == "" {
		return Route{}, &Error{Code: Invalid, Message: "a NemSMS needs a notification text",
			Fields: []FieldError{{Resource: "memo", Field: "/Message/MessageHeader/notification", Code: "empty.notification.not.allowed",
				Message: "Empty notification is not allowed for MeMo of the type NEMSMS"}}}
	}
	return Route{Deliveries: []Delivery{{Channel: ChannelSMS, Queue: SMSQueue,
		Meta: map[string]string{"phone": c.Phone, "text": l.Notification, "recipient": l.RecipientID}}}}, nil
}

// MailboxKindOf tells which of an organisation's mailboxes a letter is for:
// an explicit postType wins ("MYNDIGHEDSPOST"/"VIRKSOMHEDSPOST"); otherwise
// post to an authority is authority post and post to a company is CVR post.
func MailboxKindOf(o Organisation, postType string) MailboxKind {
	switch strings.ToUpper(strings.TrimSpace(postType)) {
	case "MYNDIGHEDSPOST", "AUTHORITY_POST":
		if o.Kind == Authority {
			return AuthorityPost
		}
	case "VIRKSOMHEDSPOST", "CVR_POST":
		return CVRPost
	}
	if o.Kind == Authority {
		return AuthorityPost
	}
	return CVRPost
}

func (r *Router) routeOrg(ctx context.Context, l Letter, mode Mode) (Route, error) {
	// What routing may need is read side by side (on a replica set each
	// read is a round trip the sender waits for): the organisation, its
	// systems and rules, the contact point the letter names (or, when it
	// carries codes, the contact points), and the contact register for an
	// organisation that turns out not to be connected. What the decision
	// does not use is read in vain.
	var (
		o                Organisation
		systems          []System
		rules            []RoutingRule
		cp               ContactPoint
		points           []ContactPoint
		contact          Contact
		oErr, sErr, rErr error
		cpErr, cErr      error
		pErr             error
	)
	reads := []func(){
		func() { o, oErr = r.Store.GetOrg(ctx, l.RecipientID) },
		func() { systems, sErr = r.Store.ListSystems(ctx, l.RecipientID) },
		func() { rules, rErr = r.Store.ListRoutingRules(ctx, l.RecipientID) },
		func() { contact, _, cErr = r.lookupContact(ctx, l.RecipientID) },
	}
	if l.ContactPoint != "" {
		reads = append(reads, func() { cp, cpErr = r.Store.GetContactPoint(ctx, l.ContactPoint) })
	}
	if hasCodes(l) {
		reads = append(reads, func() { points, pErr = r.Store.ListContactPoints(ctx, l.RecipientID) })
	}
	sideBySide(reads...)
	if ErrorCode(oErr) == NotFound || (oErr == nil && !o.Active) {
		// A company or authority not connected to this hub: its post stays
		// in its CVR mailbox for viewing clients, or is printed when exempt.
		if cErr != nil {
			return Route{}, cErr
		}
		if contact.Status == Exempt {
			if mode == ModeDigitalOnly {
				return notDelivered("recipient.exempt", "the recipient is exempt from Digital Post and the sender chose digital delivery only"), nil
			}
			return r.routePrint(ctx, l)
		}
		return Route{Deliveries: []Delivery{{Channel: ChannelMailbox, Queue: MailboxQueue(l.RecipientID, CVRPost), OrgCVR: l.RecipientID}}}, nil
	}
	if oErr != nil {
		return Route{}, oErr
	}
	kind := MailboxKindOf(o, l.PostType)
	inMailbox := Route{Deliveries: []Delivery{{Channel: ChannelMailbox, Queue: MailboxQueue(o.CVR, kind), OrgCVR: o.CVR}}}
	if o.Setup == SetupMailboxOnly {
		return inMailbox, nil
	}
	if sErr != nil {
		return Route{}, sErr
	}
	active := map[string]System{}
	var def, cvrSys *System
	for i := range systems {
		s := systems[i]
		if s.Role != RecipientSystem || !s.Active {
			continue
		}
		active[s.ID] = s
		switch {
		case s.Mailbox == CVRPost:
			cvrSys = &systems[i]
		case s.Default:
			def = &systems[i]
		}
	}
	toSystem := func(s System) Route {
		return Route{Deliveries: []Delivery{{Channel: ChannelSystem, Queue: SystemQueue(s.ID), OrgCVR: o.CVR, SystemID: s.ID}}}
	}
	if kind == CVRPost {
		if cvrSys != nil {
			return toSystem(*cvrSys), nil
		}
		return inMailbox, nil
	}
	if l.ContactPoint != "" {
		if err := cpErr; ErrorCode(err) == NotFound || (err == nil && (cp.OrgCVR != o.CVR || !cp.Active)) {
			return Route{}, &Error{Code: Invalid, Message: "the recipient has no such active contact point",
				Fields: []FieldError{{Resource: "memo", Field: "/Message/MessageHeader/Recipient/ContactPoint/contactPointID",
					Code: "contact.point.not.found", Message: "no active contact point with this id at the recipient", RejectedValue: l.ContactPoint}}}
		}
		if cpErr != nil {
			return Route{}, cpErr
		}
		if cp.SizeThresholdMB > 0 && float64(l.Size) > cp.SizeThresholdMB*1024*1024 {
			return Route{}, &Error{Code: Invalid, Message: "the message is larger than the contact point accepts",
				Fields: []FieldError{{Resource: "memo", Field: "/Message", Code: "contact.point.size.exceeded",
					Message: "the contact point accepts messages up to its memoSizeThresholdMB"}}}
		}
		if cp.AttachmentLimit > 0 && l.Attachments > cp.AttachmentLimit {
			return Route{}, &Error{Code: Invalid, Message: "the message has more attachments than the contact point accepts",
				Fields: []FieldError{{Resource: "memo", Field: "/Message/MessageBody", Code: "contact.point.attachments.exceeded",
					Message: "the contact point accepts at most allowedNumberOfAttachments additional documents"}}}
		}
		if s, ok := active[cp.SystemID]; ok {
			return toSystem(s), nil
		}
	}
	if o.Setup == SetupContactable && hasCodes(l) {
		if pErr != nil {
			return Route{}, pErr
		}
		if cp := pointByCodes(points, l, active); cp != nil {
			return toSystem(active[cp.SystemID]), nil
		}
	}
	if rErr != nil {
		return Route{}, rErr
	}
	for _, rule := range rules {
		if s, ok := active[rule.SystemID]; ok && ruleMatches(rule, l) {
			return toSystem(s), nil
		}
	}
	if def != nil {
		return toSystem(*def), nil
	}
	return inMailbox, nil
}

// sideBySide runs fns concurrently and waits for all of them.
func sideBySide(fns ...func()) {
	var wg sync.WaitGroup
	for _, fn := range fns[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	fns[0]()
	wg.Wait()
}

func ruleMatches(rule RoutingRule, l Letter) bool {
	var v string
	switch rule.Field {
	case "label":
		v = l.Label
	default:
		v = l.Attrs[rule.Field]
	}
	if v == "" {
		return false
	}
	if p, ok := strings.CutSuffix(rule.Value, "*"); ok {
		return strings.HasPrefix(v, p)
	}
	return v == rule.Value
}

// codeAttrs pairs each contact-point code type with the letter attribute it
// is compared with. KLE and FORM are hierarchical ("02.00" covers
// "02.00.05"); GLN and SOR name one unit; CUSTOM codes are for look-ups
// only, no MeMo field carries them.
var codeAttrs = map[CodeType]struct {
	attr         string
	hierarchical bool
}{CodeKLE: {"KLE", true}, CodeFORM: {"FORM", true}, CodeGLN: {"GLN", false}, CodeSOR: {"SOR", false}}

func hasCodes(l Letter) bool {
	for _, a := range codeAttrs {
		if l.Attrs[a.attr] != "" {
			return true
		}
	}
	return false
}

// codeMatch is how specifically c designates l: the length of the code
// when it equals the letter's attribute of its type or (KLE, FORM) is a
// level above it, else 0.
func codeMatch(c ContactPointCode, l Letter) int {
	a, ok := codeAttrs[c.Type]
	code := strings.TrimSpace(c.Code)
	v := strings.TrimSpace(l.Attrs[a.attr])
	if !ok || code == "" || v == "" {
		return 0
	}
	if v == code || a.hierarchical && strings.HasPrefix(v, code+".") {
		return len(code)
	}
	return 0
}

// pointByCodes is the active contact point whose codes designate l most
// specifically (the longest matching code; the oldest point on a tie),
// among those mapped to an active receiver system whose limits l is
// within. nil when none: a letter matched by codes only is never refused
// for a contact point's limits, it goes on to the rules and the default.
func pointByCodes(points []ContactPoint, l Letter, active map[string]System) *ContactPoint {
	var best *ContactPoint
	bestLen := 0
	for i := range points {
		p := &points[i]
		if _, ok := active[p.SystemID]; !ok || !p.Active || !within(*p, l) {
			continue
		}
		for _, c := range p.Codes {
			n := codeMatch(c, l)
			if n == 0 || n < bestLen {
				continue
			}
			if n > bestLen || p.Created.Before(best.Created) || p.Created.Equal(best.Created) && p.ID < best.ID {
				best, bestLen = p, n
			}
		}
	}
	return best
}

// within reports whether l fits p's size threshold and attachment limit.
func within(p ContactPoint, l Letter) bool {
	return (p.SizeThresholdMB <= 0 || float64(l.Size) <= p.SizeThresholdMB*1024*1024) &&
		(p.AttachmentLimit <= 0 || l.Attachments <= p.AttachmentLimit)
}
