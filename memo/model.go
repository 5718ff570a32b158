package memo

// The Go model of a MeMo message, versions 1.1 and 1.2.
//
// Every element both schemas declare has a field here, named after the
// element and in the schemas' sequence order, so nothing a valid document
// carries is lost on parse → build or on conversion. Optional text elements
// are plain strings: an absent element and an empty one are the same value
// ("") and the builder omits optional elements that are empty. The three
// booleans with schema defaults are pointers, because MeMo 1.1 requires
// mandatory and legalNotification and 1.2 does not, and a converter must be
// able to tell "absent" from "false".
//
// Dates and times are kept as the document's lexical strings (xs:date,
// xs:dateTime with a trailing Z) so a message is reproduced byte for byte
// where it matters; helpers such as DateOnly and DateTimeUTC format Go times.

// Namespaces of MeMo and its companion schemas.
const (
	NSMemo = "https://DigitalPost.dk/MeMo-1"
	NSGrd  = "https://data.gov.dk/model/core/"
	NSKle  = "http://kle-online.dk/"
	NSForm = "http://www.form-online.dk/"
	NSDmv  = "https://motorregister.skat.dk/"
	NSGln  = "https://www.gs1.dk/gs1-standarder/identifikation/gln-global-location-number/"
	NSUdd  = "https://www.dst.dk/da/TilSalg/Forskningsservice/Dokumentation/hoejkvalitetsvariable/elevregister-2/udd#"
	NSSor  = "https://services.nsi.dk/en/Services/SOR"
)

// Supported memoVersion values.
const (
	Version11 = "1.1"
	Version12 = "1.2"
)

// DefaultSchVersion is the memoSchVersion written for MeMo 1.1 when the model
// carries none (1.2 has no such attribute).
const DefaultSchVersion = "1.1.0"

// Message types (dt:memoMessageType).
const (
	TypeDigitalPost = "DIGITALPOST"
	TypeNemSMS      = "NEMSMS"
)

// Party id types the hub knows.
const (
	IDTypeCPR = "CPR"
	IDTypeCVR = "CVR"
)

// Post types used by NgDP to tell authority post from company post.
const (
	PostTypeMyndighedspost  = "MYNDIGHEDSPOST"
	PostTypeVirksomhedspost = "VIRKSOMHEDSPOST"
)

// Message is a MeMo document: the root element Message.
type Message struct {
	// Version is memoVersion, normalised to "1.1" or "1.2".
	Version string `json:"memoVersion"`
	// SchVersion is memoSchVersion (1.1 only; "" in 1.2).
	SchVersion    string        `json:"memoSchVersion,omitempty"`
	MessageHeader MessageHeader `json:"messageHeader"`
	// MessageBody is optional in both versions (NemSMS carries none).
	MessageBody *MessageBody `json:"messageBody,omitempty"`

	// Size is the size in bytes of the parsed document (0 for a message
	// built in memory); the size rule judges it.
	Size int64 `json:"-"`
}

// MessageHeader is Message/MessageHeader.
type MessageHeader struct {
	MessageType            string       `json:"messageType"`
	MessageUUID            string       `json:"messageUUID"`
	MessageID              string       `json:"messageID,omitempty"`
	MessageCode            string       `json:"messageCode,omitempty"`
	Label                  string       `json:"label"`
	Notification           string       `json:"notification,omitempty"`
	AdditionalNotification string       `json:"additionalNotification,omitempty"`
	Reply                  *bool        `json:"reply,omitempty"`
	ReplyByDateTime        string       `json:"replyByDateTime,omitempty"`
	DoNotDeliverUntilDate  string       `json:"doNotDeliverUntilDate,omitempty"`
	Mandatory              *bool        `json:"mandatory,omitempty"`
	LegalNotification      *bool        `json:"legalNotification,omitempty"`
	PostType               string       `json:"postType,omitempty"`
	Sender                 Sender       `json:"sender"`
	Recipient              Recipient    `json:"recipient"`
	ContentData            *ContentData `json:"contentData,omitempty"`
	ForwardData            *ForwardData `json:"forwardData,omitempty"`
	ReplyData              []ReplyData  `json:"replyData,omitempty"`

	lines headerLines
}

type headerLines struct {
	header, messageType, messageUUID, notification, doNotDeliverUntilDate int
}

// Sender is MessageHeader/Sender.
type Sender struct {
	SenderID      string         `json:"senderID"`
	IDType        string         `json:"idType"`
	IDTypeLabel   string         `json:"idTypeLabel,omitempty"`
	Label         string         `json:"label"`
	AttentionData *AttentionData `json:"attentionData,omitempty"`
	ContactPoint  *ContactPoint  `json:"contactPoint,omitempty"`
	// Representative exists in MeMo 1.2 only.
	Representative *Representative `json:"representative,omitempty"`

	idLine, idTypeLine int
}

// Representative is Sender/Representative (MeMo 1.2): who sends on behalf
// of the sender. All its elements are optional.
type Representative struct {
	RepresentativeID string `json:"representativeID,omitempty"`
	IDType           string `json:"idType,omitempty"`
	IDTypeLabel      string `json:"idTypeLabel,omitempty"`
	Label            string `json:"label,omitempty"`

	line int
}

// Recipient is MessageHeader/Recipient.
type Recipient struct {
	RecipientID   string         `json:"recipientID"`
	IDType        string         `json:"idType"`
	IDTypeLabel   string         `json:"idTypeLabel,omitempty"`
	Label         string         `json:"label,omitempty"`
	AttentionData *AttentionData `json:"attentionData,omitempty"`
	ContactPoint  *ContactPoint  `json:"contactPoint,omitempty"`

	idLine, idTypeLine int
}

// AttentionData is Sender/AttentionData and Recipient/AttentionData.
type AttentionData struct {
	AttentionPerson      *AttentionPerson      `json:"attentionPerson,omitempty"`
	ProductionUnit       *ProductionUnit       `json:"productionUnit,omitempty"`
	GlobalLocationNumber *GlobalLocationNumber `json:"globalLocationNumber,omitempty"`
	EMail                *EMail                `json:"email,omitempty"`
	SEnumber             *SEnumber             `json:"seNumber,omitempty"`
	Telephone            *Telephone            `json:"telephone,omitempty"`
	EID                  *EID                  `json:"eID,omitempty"`
	ContentResponsible   *ContentResponsible   `json:"contentResponsible,omitempty"`
	GeneratingSystem     *GeneratingSystem     `json:"generatingSystem,omitempty"`
	SORdata              *SORdata              `json:"sorData,omitempty"`
	Address              *Address              `json:"address,omitempty"`
	UnstructuredAddress  *UnstructuredAddress  `json:"unstructuredAddress,omitempty"`
}

// AttentionPerson is AttentionData/AttentionPerson.
type AttentionPerson struct {
	PersonID string `json:"personID,omitempty"`
	Label    string `json:"label,omitempty"`
}

// EMail is AttentionData/EMail.
type EMail struct {
	EmailAddress string `json:"emailAddress"`
	RelatedAgent string `json:"relatedAgent,omitempty"`
}

// Telephone is AttentionData/Telephone.
type Telephone struct {
	TelephoneNumber string `json:"telephoneNumber"`
	RelatedAgent    string `json:"relatedAgent,omitempty"`
}

// ContentResponsible is AttentionData/ContentResponsible.
type ContentResponsible struct {
	ContentResponsibleID string `json:"contentResponsibleID,omitempty"`
	Label                string `json:"label,omitempty"`
}

// GeneratingSystem is AttentionData/GeneratingSystem.
type GeneratingSystem struct {
	GeneratingSystemID string `json:"generatingSystemID"`
	Label              string `json:"label,omitempty"`
}

// ContactPoint is Sender/ContactPoint and Recipient/ContactPoint.
type ContactPoint struct {
	ContactGroup   string        `json:"contactGroup,omitempty"`
	ContactPointID string        `json:"contactPointID"`
	Label          string        `json:"label,omitempty"`
	ContactInfo    []ContactInfo `json:"contactInfo,omitempty"` // at most 2

	idLine int
}

// ContactInfo is ContactPoint/ContactInfo.
type ContactInfo struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// ContentData is MessageHeader/ContentData.
type ContentData struct {
	CPRdata               *CPRdata                `json:"cprData,omitempty"`
	CVRdata               *CVRdata                `json:"cvrData,omitempty"`
	MotorVehicle          *MotorVehicle           `json:"motorVehicle,omitempty"`
	PropertyNumber        *PropertyNumber         `json:"propertyNumber,omitempty"`
	CaseID                *CaseID                 `json:"caseID,omitempty"`
	KLEdata               *KLEdata                `json:"kleData,omitempty"`
	FORMdata              *FORMdata               `json:"formData,omitempty"`
	ProductionUnit        *ProductionUnit         `json:"productionUnit,omitempty"`
	Education             *Education              `json:"education,omitempty"`
	Address               *Address                `json:"address,omitempty"`
	UnstructuredAddress   *UnstructuredAddress    `json:"unstructuredAddress,omitempty"`
	AdditionalContentData []AdditionalContentData `json:"additionalContentData,omitempty"` // at most 10
}

// CaseID is ContentData/CaseID.
type CaseID struct {
	CaseID     string `json:"caseID"`
	CaseSystem string `json:"caseSystem"`
}

// AdditionalContentData is ContentData/AdditionalContentData.
type AdditionalContentData struct {
	ContentDataType  string `json:"contentDataType,omitempty"`
	ContentDataName  string `json:"contentDataName"`
	ContentDataValue string `json:"contentDataValue"`
}

// CPRdata is grd:CPRdata.
type CPRdata struct {
	CPRNumber string `json:"cprNumber"`
	Name      string `json:"name,omitempty"`

	line int
}

// CVRdata is grd:CVRdata.
type CVRdata struct {
	CVRNumber   string `json:"cvrNumber"`
	CompanyName string `json:"companyName,omitempty"`

	line int
}

// ProductionUnit is grd:ProductionUnit; the number is an xs:long kept as text.
type ProductionUnit struct {
	ProductionUnitNumber string `json:"productionUnitNumber"`
	ProductionUnitName   string `json:"productionUnitName,omitempty"`
}

// SEnumber is grd:SEnumber.
type SEnumber struct {
	SENumber    string `json:"seNumber"`
	CompanyName string `json:"companyName,omitempty"`
}

// EID is grd:EID.
type EID struct {
	EID   string `json:"eID"`
	Label string `json:"label,omitempty"`
}

// PropertyNumber is grd:PropertyNumber.
type PropertyNumber struct {
	PropertyNumber string `json:"propertyNumber"`
}

// Address is grd:Address.
type Address struct {
	ID           string        `json:"id,omitempty"`
	AddressLabel string        `json:"addressLabel,omitempty"`
	HouseNumber  string        `json:"houseNumber,omitempty"`
	Door         string        `json:"door,omitempty"`
	Floor        string        `json:"floor,omitempty"`
	Co           string        `json:"co,omitempty"`
	ZipCode      string        `json:"zipCode,omitempty"`
	City         string        `json:"city,omitempty"`
	Country      string        `json:"country,omitempty"`
	AddressPoint *AddressPoint `json:"addressPoint,omitempty"`
}

// AddressPoint is grd:AddressPoint.
type AddressPoint struct {
	GeographicEastingMeasure  string `json:"geographicEastingMeasure,omitempty"`
	GeographicNorthingMeasure string `json:"geographicNorthingMeasure,omitempty"`
	GeographicHeightMeasure   string `json:"geographicHeightMeasure,omitempty"`
}

// UnstructuredAddress is grd:UnstructuredAddress.
type UnstructuredAddress struct {
	Unstructured string `json:"unstructured"`
}

// MotorVehicle is dmv:MotorVehicle.
type MotorVehicle struct {
	LicenseNumber string `json:"licenseNumber"`
	ChassisNumber string `json:"chassisNumber,omitempty"`
}

// KLEdata is kle:KLEdata.
type KLEdata struct {
	SubjectKey    string `json:"subjectKey"`
	Version       string `json:"version"`
	ActivityFacet string `json:"activityFacet,omitempty"`
	Label         string `json:"label"`
}

// FORMdata is form:FORMdata.
type FORMdata struct {
	TaskKey       string `json:"taskKey"`
	Version       string `json:"version"`
	ActivityFacet string `json:"activityFacet,omitempty"`
	Label         string `json:"label"`
}

// Education is udd:Education.
type Education struct {
	EducationCode string `json:"educationCode"`
	EducationName string `json:"educationName,omitempty"`
}

// GlobalLocationNumber is gln:GlobalLocationNumber; the number is an xs:long kept as text.
type GlobalLocationNumber struct {
	GlobalLocationNumber string `json:"globalLocationNumber"`
	Location             string `json:"location,omitempty"`
}

// SORdata is sor:SORdata.
type SORdata struct {
	SORIdentifier string `json:"sorIdentifier"`
	EntryName     string `json:"entryName,omitempty"`
}

// ForwardData is MessageHeader/ForwardData.
type ForwardData struct {
	MessageUUID                string `json:"messageUUID"`
	OriginalMessageDateTime    string `json:"originalMessageDateTime"`
	OriginalSender             string `json:"originalSender"`
	OriginalContentResponsible string `json:"originalContentResponsible,omitempty"`
	// OriginalRepresentative exists in MeMo 1.2 only.
	OriginalRepresentative string `json:"originalRepresentative,omitempty"`
	ContactPointID         string `json:"contactPointID,omitempty"`
	Comment                string `json:"comment,omitempty"`

	contactPointIDLine int
}

// ReplyData is MessageHeader/ReplyData (repeatable).
type ReplyData struct {
	MessageID           string                `json:"messageID,omitempty"`
	MessageUUID         string                `json:"messageUUID"`
	ReplyUUID           string                `json:"replyUUID,omitempty"`
	SenderID            string                `json:"senderID,omitempty"`
	RecipientID         string                `json:"recipientID,omitempty"`
	CaseID              string                `json:"caseID,omitempty"`
	ContactPointID      string                `json:"contactPointID,omitempty"`
	GeneratingSystemID  string                `json:"generatingSystemID,omitempty"`
	Comment             string                `json:"comment,omitempty"`
	AdditionalReplyData []AdditionalReplyData `json:"additionalReplyData,omitempty"` // at most 4

	contactPointIDLine int
}

// AdditionalReplyData is ReplyData/AdditionalReplyData.
type AdditionalReplyData struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// MessageBody is Message/MessageBody.
type MessageBody struct {
	CreatedDateTime    string     `json:"createdDateTime"`
	MainDocument       Document   `json:"mainDocument"`
	AdditionalDocument []Document `json:"additionalDocument,omitempty"`
	TechnicalDocument  []Document `json:"technicalDocument,omitempty"`
}

// Document is MainDocument, AdditionalDocument or TechnicalDocument; their
// id element is named mainDocumentID, additionalDocumentID or
// technicalDocumentID after the kind. TechnicalDocument has no Actions.
type Document struct {
	DocumentID string   `json:"documentID,omitempty"`
	Label      string   `json:"label,omitempty"`
	Files      []*File  `json:"files"` // at least one
	Actions    []Action `json:"actions,omitempty"`

	line int
}

// Action is Document/Action: a call to action shown with the document.
type Action struct {
	Label         string       `json:"label"`
	ActionCode    string       `json:"actionCode"`
	StartDateTime string       `json:"startDateTime,omitempty"`
	EndDateTime   string       `json:"endDateTime,omitempty"`
	Reservation   *Reservation `json:"reservation,omitempty"` // either Reservation
	EntryPoint    *EntryPoint  `json:"entryPoint,omitempty"`  // or EntryPoint, or neither

	line int
}

// Reservation is Action/Reservation (a calendar entry).
type Reservation struct {
	Description     string `json:"description"`
	ReservationUUID string `json:"reservationUUID"`
	Abstract        string `json:"abstract"`
	Location        string `json:"location"`
	StartDateTime   string `json:"startDateTime"`
	EndDateTime     string `json:"endDateTime"`
	OrganizerMail   string `json:"organizerMail,omitempty"`
	OrganizerName   string `json:"organizerName,omitempty"`
}

// EntryPoint is Action/EntryPoint.
type EntryPoint struct {
	URL string `json:"url"`

	line int
}

// DocumentKind names the three kinds of Document.
type DocumentKind int

// The document kinds, in the order MessageBody lists them.
const (
	MainDocumentKind DocumentKind = iota
	AdditionalDocumentKind
	TechnicalDocumentKind
)

// Element is the element name of the kind.
func (k DocumentKind) Element() string {
	switch k {
	case AdditionalDocumentKind:
		return "AdditionalDocument"
	case TechnicalDocumentKind:
		return "TechnicalDocument"
	}
	return "MainDocument"
}

// idElement is the name of the kind's document id element.
func (k DocumentKind) idElement() string {
	switch k {
	case AdditionalDocumentKind:
		return "additionalDocumentID"
	case TechnicalDocumentKind:
		return "technicalDocumentID"
	}
	return "mainDocumentID"
}

// DocumentRef is one document with its kind and its path in the message.
type DocumentRef struct {
	Kind     DocumentKind
	Path     string // e.g. "/Message/MessageBody/AdditionalDocument[2]"
	Document *Document
}

// Documents lists every document of the body in document order.
func (m *Message) Documents() []DocumentRef {
	b := m.MessageBody
	if b == nil {
		return nil
	}
	refs := make([]DocumentRef, 0, 1+len(b.AdditionalDocument)+len(b.TechnicalDocument))
	refs = append(refs, DocumentRef{MainDocumentKind, documentPath(MainDocumentKind, 0), &b.MainDocument})
	for i := range b.AdditionalDocument {
		refs = append(refs, DocumentRef{AdditionalDocumentKind, documentPath(AdditionalDocumentKind, i), &b.AdditionalDocument[i]})
	}
	for i := range b.TechnicalDocument {
		refs = append(refs, DocumentRef{TechnicalDocumentKind, documentPath(TechnicalDocumentKind, i), &b.TechnicalDocument[i]})
	}
	return refs
}

// documentPath is the path of the i'th (from 0) document of kind k, as
// DocumentRef.Path spells it.
func documentPath(k DocumentKind, i int) string {
	if k == MainDocumentKind {
		return "/Message/MessageBody/MainDocument"
	}
	return "/Message/MessageBody/" + k.Element() + "[" + itoa(i+1) + "]"
}

// Files lists every File of the message in document order.
func (m *Message) Files() []*File {
	var fs []*File
	for _, d := range m.Documents() {
		fs = append(fs, d.Document.Files...)
	}
	return fs
}

// Bool returns a pointer to b, for the optional boolean header fields.
func Bool(b bool) *bool { return &b }

func itoa(i int) string {
	if i >= 0 && i < 10 {
		return string(rune('0' + i))
	}
	var b [20]byte
	n := len(b)
	neg := i < 0
	u := uint64(i)
	if neg {
		u = uint64(-i)
	}
	for u > 0 {
		n--
		b[n] = byte('0' + u%10)
		u /= 10
	}
	if neg {
		n--
		b[n] = '-'
	}
	return string(b[n:])
}

// File is Document/File: one file of a document. Its content is not held in
// the struct: Open streams the decoded bytes from wherever they live (a byte
// range of the parsed file, a parsed byte slice, memory, or a caller's
// reader), so a message with a 99 MB attachment costs little memory.
type File struct {
	EncodingFormat string `json:"encodingFormat"`
	Filename       string `json:"filename"`
	// Language is the element "language" (dt:memoLanguageType, e.g. "da").
	Language string `json:"language"`

	content content
	line    int
	lines   fileLines
}

type fileLines struct{ encodingFormat, filename, content int }
