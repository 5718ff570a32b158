package memo

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/hub"
)

// Codes of the business rules the hub applies beyond the XSD. Where the
// national hub (NgDP) has a code for a rule, it is used unchanged; the others
// follow its dotted style.
const (
	RuleMessageType          = "message.type.not.allowed"
	RuleMessageUUID          = "message.uuid.format.not.allowed"
	RuleIDType               = "id.type.not.allowed"
	RuleCPRFormat            = "cpr.number.format.not.allowed"
	RuleCVRFormat            = "cvr.number.format.not.allowed"
	RuleContactPointIDFormat = "contact.point.id.format.not.allowed"
	RuleEmptyNotification    = "empty.notification.not.allowed"
	RuleNemSMSDocuments      = "nemsms.documents.not.allowed"
	RuleDeliveryDateFormat   = "do.not.deliver.until.date.format.not.allowed"
	RuleDeliveryDateEarly    = "do.not.deliver.until.date.too.early"
	RuleDeliveryDateLate     = "do.not.deliver.until.date.too.late"
	RuleFilenameCharacters   = "file.name.characters.not.allowed"
	RuleFileEmpty            = "file.empty.not.allowed"
	RuleFileFormat           = "file.encoding.format.not.allowed"
	RuleFileExtension        = "file.extension.not.allowed"
	RuleEntryPointURL        = "entry.point.url.format.not.allowed"
	RuleEntryPointScheme     = "entry.point.url.scheme.not.allowed"
	RuleMessageTooLarge      = "memo.too.large"
)

// Rule describes one business rule for documentation and API clients.
type Rule struct {
	Code        string `json:"code"`
	Description string `json:"description"`
	// NgDP is true when the code is the national hub's own.
	NgDP bool `json:"ngdp"`
}

// Rules lists every business rule Check applies, in the order it applies them.
var Rules = []Rule{
	{RuleMessageType, "messageType is DIGITALPOST or NEMSMS.", false},
	{RuleMessageUUID, "messageUUID is a version 4 UUID (8-4-4-4-12 hex digits, version nibble 4, variant 8, 9, a or b).", false},
	{RuleIDType, "Sender, Recipient and Representative idType is CPR or CVR (a Representative with an id needs one).", false},
	{RuleCPRFormat, "An id of type CPR, and ContentData/CPRdata/cprNumber, is exactly 10 digits.", false},
	{RuleCVRFormat, "An id of type CVR, and ContentData/CVRdata/cvrNumber, is exactly 8 digits.", false},
	{RuleContactPointIDFormat, "A contactPointID (Sender, Recipient, ForwardData, ReplyData) is a UUID.", true},
	{RuleEmptyNotification, "A NEMSMS message has a notification that is not blank.", true},
	{RuleNemSMSDocuments, "A NEMSMS message carries no MessageBody (no documents or files).", false},
	{RuleDeliveryDateFormat, "doNotDeliverUntilDate is a date YYYY-MM-DD (optionally with a time zone).", false},
	{RuleDeliveryDateEarly, "doNotDeliverUntilDate is not before today.", true},
	{RuleDeliveryDateLate, "doNotDeliverUntilDate is at most the configured maximum delay ahead (default 365 days).", true},
	{RuleFilenameCharacters, "A filename contains none of < > : \" / \\ | ? * CR LF U+00A0 U+2000-U+200A U+2028 U+205F U+2060 U+3000.", false},
	{RuleFileEmpty, "A File's content is not empty.", true},
	{RuleFileFormat, "A File's encodingFormat is one of the allowed MIME types (case-insensitive, parameters ignored).", false},
	{RuleFileExtension, "A filename has an extension that fits its encodingFormat (e.g. .pdf for application/pdf).", true},
	{RuleEntryPointURL, "An Action's EntryPoint url is an absolute URL with a host.", false},
	{RuleEntryPointScheme, "An Action's EntryPoint url uses https.", false},
	{RuleMessageTooLarge, "The whole MeMo is at most the configured maximum size (default 99.5 MiB).", false},
}

var ruleText = func() map[string]string {
	m := make(map[string]string, len(Rules))
	for _, r := range Rules {
		m[r.Code] = r.Description
	}
	return m
}()

// Check applies the business rules to m and returns every violation, in
// document order, or nil. Rules relative to time are judged against now, in
// now's location (the hub passes Danish time). Each FieldError carries the
// rule code, the element path, the line when the message was parsed, and the
// rejected value when it is short.
func (m *Message) Check(cfg Config, now time.Time) []hub.FieldError {
	c := checker{}
	h := &m.MessageHeader
	const hp = "/Message/MessageHeader"

	if cfg.MaxSize > 0 && m.Size > cfg.MaxSize {
		c.add(RuleMessageTooLarge, "/Message", strconv.FormatInt(m.Size, 10), 0,
			"the MeMo is "+strconv.FormatInt(m.Size, 10)+" bytes; at most "+strconv.FormatInt(cfg.MaxSize, 10)+" are accepted")
	}
	if h.MessageType != TypeDigitalPost && h.MessageType != TypeNemSMS {
		c.add(RuleMessageType, hp+"/messageType", h.MessageType, h.lines.messageType, "")
	}
	if !isUUID(h.MessageUUID, true) {
		c.add(RuleMessageUUID, hp+"/messageUUID", h.MessageUUID, h.lines.messageUUID, "")
	}
	if h.MessageType == TypeNemSMS && strings.TrimSpace(h.Notification) == "" {
		c.add(RuleEmptyNotification, hp+"/notification", h.Notification, h.lines.notification,
			"Empty notification is not allowed for MeMo of the type NEMSMS")
	}
	if h.DoNotDeliverUntilDate != "" {
		c.deliveryDate(cfg, now, h)
	}

	sp := hp + "/Sender"
	c.party(sp, "senderID", h.Sender.SenderID, h.Sender.IDType, h.Sender.idLine, h.Sender.idTypeLine)
	c.contactPoint(sp, h.Sender.ContactPoint)
	if r := h.Sender.Representative; r != nil && (r.RepresentativeID != "" || r.IDType != "") {
		c.party(sp+"/Representative", "representativeID", r.RepresentativeID, r.IDType, r.line, r.line)
	}
	rp := hp + "/Recipient"
	c.party(rp, "recipientID", h.Recipient.RecipientID, h.Recipient.IDType, h.Recipient.idLine, h.Recipient.idTypeLine)
	c.contactPoint(rp, h.Recipient.ContactPoint)

	if cd := h.ContentData; cd != nil {
		if d := cd.CPRdata; d != nil && !isDigits(d.CPRNumber, 10) {
			c.add(RuleCPRFormat, hp+"/ContentData/CPRdata/cprNumber", d.CPRNumber, d.line, "")
		}
		if d := cd.CVRdata; d != nil && !isDigits(d.CVRNumber, 8) {
			c.add(RuleCVRFormat, hp+"/ContentData/CVRdata/cvrNumber", d.CVRNumber, d.line, "")
		}
	}
	if f := h.ForwardData; f != nil && f.ContactPointID != "" && !isUUID(f.ContactPointID, false) {
		c.add(RuleContactPointIDFormat, hp+"/ForwardData/contactPointID", f.ContactPointID, f.contactPointIDLine, "")
	}
	for i := range h.ReplyData {
		r := &h.ReplyData[i]
		if r.ContactPointID != "" && !isUUID(r.ContactPointID, false) {
			c.add(RuleContactPointIDFormat, hp+"/ReplyData["+itoa(i+1)+"]/contactPointID", r.ContactPointID, r.contactPointIDLine, "")
		}
	}

	if m.MessageBody != nil && h.MessageType == TypeNemSMS {
		c.add(RuleNemSMSDocuments, "/Message/MessageBody", "", m.MessageBody.MainDocument.line, "")
	}
	if b := m.MessageBody; b != nil {
		c.document(cfg, MainDocumentKind, 0, &b.MainDocument)
		for i := range b.AdditionalDocument {
			c.document(cfg, AdditionalDocumentKind, i, &b.AdditionalDocument[i])
		}
		for i := range b.TechnicalDocument {
			c.document(cfg, TechnicalDocumentKind, i, &b.TechnicalDocument[i])
		}
	}
	return c.errs
}

// document checks the files and entry points of d, the i'th document of
// its kind. Paths are spelled out for a violation only: a letter passes
// here for each of its documents.
func (c *checker) document(cfg Config, kind DocumentKind, i int, d *Document) {
	for j, f := range d.Files {
		c.file(func() string { return documentPath(kind, i) + "/File[" + itoa(j+1) + "]" }, f, cfg.AllowedMIMETypes)
	}
	for j := range d.Actions {
		a := &d.Actions[j]
		if a.EntryPoint != nil {
			c.entryPoint(func() string { return documentPath(kind, i) + "/Action[" + itoa(j+1) + "]/EntryPoint/url" }, a.EntryPoint)
		}
	}
}

type checker struct{ errs []hub.FieldError }

func (c *checker) add(code, field, value string, line int, msg string) {
	if msg == "" {
		msg = ruleText[code]
	}
	if len(value) > 128 {
		value = ""
	}
	c.errs = append(c.errs, hub.FieldError{Resource: "memo", Field: field, Code: code, Message: msg, RejectedValue: value, Line: line})
}

// party checks an id and its type.
func (c *checker) party(path, idElem, id, idType string, idLine, typeLine int) {
	switch idType {
	case IDTypeCPR:
		if !isDigits(id, 10) {
			c.add(RuleCPRFormat, path+"/"+idElem, id, idLine, "an id of type CPR is exactly 10 digits")
		}
	case IDTypeCVR:
		if !isDigits(id, 8) {
			c.add(RuleCVRFormat, path+"/"+idElem, id, idLine, "an id of type CVR is exactly 8 digits")
		}
	default:
		c.add(RuleIDType, path+"/idType", idType, typeLine, "idType must be CPR or CVR")
	}
}

func (c *checker) contactPoint(path string, cp *ContactPoint) {
	if cp != nil && !isUUID(cp.ContactPointID, false) {
		c.add(RuleContactPointIDFormat, path+"/ContactPoint/contactPointID", cp.ContactPointID, cp.idLine, "")
	}
}

func (c *checker) deliveryDate(cfg Config, now time.Time, h *MessageHeader) {
	const field = "/Message/MessageHeader/doNotDeliverUntilDate"
	v := h.DoNotDeliverUntilDate
	line := h.lines.doNotDeliverUntilDate
	d, ok := ParseDate(v)
	if !ok {
		c.add(RuleDeliveryDateFormat, field, v, line, "")
		return
	}
	today := civilDate(now)
	if d.Before(today) {
		c.add(RuleDeliveryDateEarly, field, v, line, "doNotDeliverUntilDate "+v+" is before today ("+today.Format(time.DateOnly)+")")
		return
	}
	if cfg.MaxDelay > 0 {
		last := civilDate(now.Add(cfg.MaxDelay))
		if d.After(last) {
			c.add(RuleDeliveryDateLate, field, v, line, "doNotDeliverUntilDate "+v+" is after "+last.Format(time.DateOnly)+", the latest date accepted")
		}
	}
}

// ParseDate reads the calendar date of an xs:date ("2025-09-15",
// "2025-09-15Z", "2025-09-15+02:00", surrounded by white space): midnight
// UTC of that date; the time zone does not move a calendar date. The rules
// refuse a doNotDeliverUntilDate it cannot read, so a validated letter's
// date always reads.
func ParseDate(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if len(v) < 10 {
		return time.Time{}, false
	}
	d, err := time.Parse(time.DateOnly, v[:10])
	if err != nil {
		return time.Time{}, false
	}
	switch tz := v[10:]; {
	case tz == "", tz == "Z":
	case len(tz) == 6 && (tz[0] == '+' || tz[0] == '-') && tz[3] == ':':
	default:
		return time.Time{}, false
	}
	return d, true
}

func civilDate(t time.Time) time.Time {
	y, mo, d := t.Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}

// file checks f, whose path is path(); allowed are the configured MIME
// types.
func (c *checker) file(path func() string, f *File, allowed []string) {
	if bad, ok := badFilenameChar(f.Filename); ok {
		c.add(RuleFilenameCharacters, path()+"/filename", f.Filename, f.lines.filename,
			"the filename contains the character "+strconv.QuoteRune(bad)+", which is not allowed")
	}
	if f.DecodedSize() == 0 {
		c.add(RuleFileEmpty, path()+"/content", "", f.lines.content, "")
	}
	mt := mediaType(f.EncodingFormat)
	if !slices.ContainsFunc(allowed, func(t string) bool { return mediaType(t) == mt }) {
		c.add(RuleFileFormat, path()+"/encodingFormat", f.EncodingFormat, f.lines.encodingFormat, "")
		return
	}
	if exts, known := mimeExtensions[mt]; known {
		ext := extension(f.Filename)
		ok := false
		for _, e := range exts {
			if e == ext {
				ok = true
				break
			}
		}
		if !ok {
			c.add(RuleFileExtension, path()+"/filename", f.Filename, f.lines.filename,
				"the filename's extension does not fit encodingFormat "+mt+" (expected ."+strings.Join(exts, ", .")+")")
		}
	}
}

// entryPoint checks e, whose url's path is path().
func (c *checker) entryPoint(path func() string, e *EntryPoint) {
	u, err := url.Parse(strings.TrimSpace(e.URL))
	if err != nil || !u.IsAbs() || u.Host == "" {
		if err == nil && u.IsAbs() && !strings.EqualFold(u.Scheme, "https") {
			c.add(RuleEntryPointScheme, path(), e.URL, e.line, "")
			return
		}
		c.add(RuleEntryPointURL, path(), e.URL, e.line, "")
		return
	}
	if !strings.EqualFold(u.Scheme, "https") {
		c.add(RuleEntryPointScheme, path(), e.URL, e.line, "")
	}
}

// mediaType lower-cases a MIME type and drops its parameters.
func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

func extension(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(name[i+1:]))
}

// mimeExtensions are the filename extensions that fit each MIME type the
// default configuration allows. A configured type missing here is checked
// for being allowed only.
var mimeExtensions = map[string][]string{
	"application/pdf":    {"pdf"},
	"text/plain":         {"txt", "text"},
	"text/html":          {"html", "htm"},
	"text/xml":           {"xml"},
	"application/xml":    {"xml"},
	"image/png":          {"png"},
	"image/jpeg":         {"jpg", "jpeg", "jpe", "jfif"},
	"image/gif":          {"gif"},
	"image/tiff":         {"tif", "tiff"},
	"image/bmp":          {"bmp"},
	"image/svg+xml":      {"svg"},
	"application/msword": {"doc", "dot"},
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": {"docx"},
	"application/vnd.ms-excel": {"xls", "xlt"},
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         {"xlsx"},
	"application/vnd.ms-powerpoint":                                             {"ppt", "pps", "pot"},
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": {"pptx"},
	"application/vnd.oasis.opendocument.text":                                   {"odt"},
	"application/vnd.oasis.opendocument.spreadsheet":                            {"ods"},
	"application/rtf": {"rtf"},
	"text/rtf":        {"rtf"},
	"text/csv":        {"csv"},
}

// badFilenameChar returns the first character NgDP refuses in a filename.
func badFilenameChar(name string) (rune, bool) {
	for _, r := range name {
		switch {
		case strings.ContainsRune("<>:\"/\\|?*\r\n", r),
			r == 0x00A0, r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x205F, r == 0x2060, r == 0x3000:
			return r, true
		}
	}
	return 0, false
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isUUID reports whether s is 8-4-4-4-12 hex digits; v4 also requires the
// version nibble 4 and an RFC 4122 variant, as dt:memoUuidType does.
func isUUID(s string, v4 bool) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
			continue
		}
		if !isHex(c) {
			return false
		}
	}
	if v4 {
		if s[14] != '4' {
			return false
		}
		switch s[19] {
		case '8', '9', 'a', 'b', 'A', 'B':
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
