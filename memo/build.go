package memo

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// WriteTo writes m as a MeMo document of version m.Version ("1.1" or "1.2";
// "" means 1.2), in the schemas' element order, with the MeMo namespace on
// the prefix memo: (the form SF1601 requires). File contents are streamed and
// base64-encoded on the fly, so a message with a 99 MB attachment is written
// without holding it. Optional elements that are empty are omitted.
//
// WriteTo refuses (with an error, before or while writing) what the target
// version cannot express, e.g. a Representative in 1.1 — Convert first — and
// text with characters XML cannot carry.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	x := &xmlWriter{w: bufio.NewWriterSize(cw, 64<<10)}
	version := m.Version
	if version == "" {
		version = Version12
	}
	if version != Version11 && version != Version12 {
		return 0, fmt.Errorf("memo: cannot write memoVersion %q", m.Version)
	}
	if version == Version11 {
		if m.MessageHeader.Sender.Representative != nil {
			return 0, errors.New("memo: Sender/Representative exists in MeMo 1.2 only (use Convert)")
		}
		if f := m.MessageHeader.ForwardData; f != nil && f.OriginalRepresentative != "" {
			return 0, errors.New("memo: ForwardData/originalRepresentative exists in MeMo 1.2 only (use Convert)")
		}
	}
	x.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	x.raw(`<memo:Message xmlns:memo="` + NSMemo + `" xmlns:grd="` + NSGrd + `" xmlns:kle="` + NSKle +
		`" xmlns:form="` + NSForm + `" xmlns:dmv="` + NSDmv + `" xmlns:gln="` + NSGln + `" xmlns:udd="` + NSUdd +
		`" xmlns:sor="` + NSSor + `" memoVersion="` + version + `"`)
	if version == Version11 {
		sv := m.SchVersion
		if sv == "" {
			sv = DefaultSchVersion
		}
		x.raw(` memoSchVersion="`)
		x.text(sv, true)
		x.raw(`"`)
	}
	x.raw(">")
	x.depth = 1
	x.header(&m.MessageHeader, version)
	if b := m.MessageBody; b != nil {
		x.body(b)
	}
	x.depth = 0
	x.raw("\n</memo:Message>\n")
	if x.err == nil {
		x.err = x.w.Flush()
	}
	return cw.n, x.err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type xmlWriter struct {
	w     *bufio.Writer
	depth int
	err   error
}

func (x *xmlWriter) raw(s string) {
	if x.err == nil {
		_, x.err = x.w.WriteString(s)
	}
}

func (x *xmlWriter) indent() {
	x.raw("\n")
	for i := 0; i < x.depth; i++ {
		x.raw("\t")
	}
}

// qname is the written name: companion elements carry their prefix already.
func qname(name string) string {
	if strings.IndexByte(name, ':') >= 0 {
		return name
	}
	return "memo:" + name
}

func (x *xmlWriter) start(name string) {
	x.indent()
	x.raw("<" + qname(name) + ">")
	x.depth++
}

func (x *xmlWriter) end(name string) {
	x.depth--
	x.indent()
	x.raw("</" + qname(name) + ">")
}

// leaf writes a required simple element.
func (x *xmlWriter) leaf(name, v string) {
	x.indent()
	q := qname(name)
	x.raw("<" + q + ">")
	x.text(v, false)
	x.raw("</" + q + ">")
}

// opt writes an optional simple element unless v is empty.
func (x *xmlWriter) opt(name, v string) {
	if v != "" {
		x.leaf(name, v)
	}
}

func (x *xmlWriter) optBool(name string, v *bool) {
	if v != nil {
		x.leaf(name, fmt.Sprint(*v))
	}
}

// text writes v escaped; CR is written as a reference so it survives
// line-end normalisation.
func (x *xmlWriter) text(v string, attr bool) {
	if x.err != nil {
		return
	}
	last := 0
	for i := 0; i < len(v); {
		c := v[i]
		var esc string
		size := 1
		switch {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '"' && attr:
			esc = "&quot;"
		case c == '\r':
			esc = "&#13;"
		case (c == '\n' || c == '\t') && attr:
			esc = "&#" + itoa(int(c)) + ";"
		case c < 0x20 && c != '\n' && c != '\t':
			x.err = fmt.Errorf("memo: text %q contains a control character XML cannot carry", clip(v))
			return
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && n == 1 || !isXMLChar(r) {
				x.err = fmt.Errorf("memo: text %q is not valid UTF-8 XML text", clip(v))
				return
			}
			i += n
			continue
		default:
			i++
			continue
		}
		x.raw(v[last:i])
		x.raw(esc)
		i += size
		last = i
	}
	x.raw(v[last:])
}

func (x *xmlWriter) header(h *MessageHeader, version string) {
	x.start("MessageHeader")
	x.leaf("messageType", h.MessageType)
	x.leaf("messageUUID", h.MessageUUID)
	x.opt("messageID", h.MessageID)
	x.opt("messageCode", h.MessageCode)
	x.leaf("label", h.Label)
	x.opt("notification", h.Notification)
	x.opt("additionalNotification", h.AdditionalNotification)
	x.optBool("reply", h.Reply)
	x.opt("replyByDateTime", h.ReplyByDateTime)
	x.opt("doNotDeliverUntilDate", h.DoNotDeliverUntilDate)
	if version == Version11 {
		// required in 1.1; the schema default is false
		x.leaf("mandatory", fmt.Sprint(h.Mandatory != nil && *h.Mandatory))
		x.leaf("legalNotification", fmt.Sprint(h.LegalNotification != nil && *h.LegalNotification))
	} else {
		x.optBool("mandatory", h.Mandatory)
		x.optBool("legalNotification", h.LegalNotification)
	}
	x.opt("postType", h.PostType)

	s := &h.Sender
	x.start("Sender")
	x.leaf("senderID", s.SenderID)
	x.leaf("idType", s.IDType)
	x.opt("idTypeLabel", s.IDTypeLabel)
	x.leaf("label", s.Label)
	x.attention(s.AttentionData)
	x.contactPoint(s.ContactPoint)
	if r := s.Representative; r != nil {
		x.start("Representative")
		x.opt("representativeID", r.RepresentativeID)
		x.opt("idType", r.IDType)
		x.opt("idTypeLabel", r.IDTypeLabel)
		x.opt("label", r.Label)
		x.end("Representative")
	}
	x.end("Sender")

	r := &h.Recipient
	x.start("Recipient")
	x.leaf("recipientID", r.RecipientID)
	x.leaf("idType", r.IDType)
	x.opt("idTypeLabel", r.IDTypeLabel)
	x.opt("label", r.Label)
	x.attention(r.AttentionData)
	x.contactPoint(r.ContactPoint)
	x.end("Recipient")

	if c := h.ContentData; c != nil {
		x.contentData(c)
	}
	if f := h.ForwardData; f != nil {
		x.start("ForwardData")
		x.leaf("messageUUID", f.MessageUUID)
		x.leaf("originalMessageDateTime", f.OriginalMessageDateTime)
		x.leaf("originalSender", f.OriginalSender)
		x.opt("originalContentResponsible", f.OriginalContentResponsible)
		x.opt("originalRepresentative", f.OriginalRepresentative)
		x.opt("contactPointID", f.ContactPointID)
		x.opt("comment", f.Comment)
		x.end("ForwardData")
	}
	for i := range h.ReplyData {
		d := &h.ReplyData[i]
		x.start("ReplyData")
		x.opt("messageID", d.MessageID)
		x.leaf("messageUUID", d.MessageUUID)
		x.opt("replyUUID", d.ReplyUUID)
		x.opt("senderID", d.SenderID)
		x.opt("recipientID", d.RecipientID)
		x.opt("caseID", d.CaseID)
		x.opt("contactPointID", d.ContactPointID)
		x.opt("generatingSystemID", d.GeneratingSystemID)
		x.opt("comment", d.Comment)
		for _, a := range d.AdditionalReplyData {
			x.start("AdditionalReplyData")
			x.leaf("label", a.Label)
			x.leaf("value", a.Value)
			x.end("AdditionalReplyData")
		}
		x.end("ReplyData")
	}
	x.end("MessageHeader")
}

func (x *xmlWriter) attention(a *AttentionData) {
	if a == nil {
		return
	}
	x.start("AttentionData")
	if v := a.AttentionPerson; v != nil {
		x.start("AttentionPerson")
		x.opt("personID", v.PersonID)
		x.opt("label", v.Label)
		x.end("AttentionPerson")
	}
	x.productionUnit(a.ProductionUnit)
	if v := a.GlobalLocationNumber; v != nil {
		x.start("gln:GlobalLocationNumber")
		x.leaf("gln:globalLocationNumber", v.GlobalLocationNumber)
		x.opt("gln:location", v.Location)
		x.end("gln:GlobalLocationNumber")
	}
	if v := a.EMail; v != nil {
		x.start("EMail")
		x.leaf("emailAddress", v.EmailAddress)
		x.opt("relatedAgent", v.RelatedAgent)
		x.end("EMail")
	}
	if v := a.SEnumber; v != nil {
		x.start("grd:SEnumber")
		x.leaf("grd:seNumber", v.SENumber)
		x.opt("grd:companyName", v.CompanyName)
		x.end("grd:SEnumber")
	}
	if v := a.Telephone; v != nil {
		x.start("Telephone")
		x.leaf("telephoneNumber", v.TelephoneNumber)
		x.opt("relatedAgent", v.RelatedAgent)
		x.end("Telephone")
	}
	if v := a.EID; v != nil {
		x.start("grd:EID")
		x.leaf("grd:eID", v.EID)
		x.opt("grd:label", v.Label)
		x.end("grd:EID")
	}
	if v := a.ContentResponsible; v != nil {
		x.start("ContentResponsible")
		x.opt("contentResponsibleID", v.ContentResponsibleID)
		x.opt("label", v.Label)
		x.end("ContentResponsible")
	}
	if v := a.GeneratingSystem; v != nil {
		x.start("GeneratingSystem")
		x.leaf("generatingSystemID", v.GeneratingSystemID)
		x.opt("label", v.Label)
		x.end("GeneratingSystem")
	}
	if v := a.SORdata; v != nil {
		x.start("sor:SORdata")
		x.leaf("sor:sorIdentifier", v.SORIdentifier)
		x.opt("sor:entryName", v.EntryName)
		x.end("sor:SORdata")
	}
	x.address(a.Address)
	x.unstructured(a.UnstructuredAddress)
	x.end("AttentionData")
}

func (x *xmlWriter) productionUnit(v *ProductionUnit) {
	if v == nil {
		return
	}
	x.start("grd:ProductionUnit")
	x.leaf("grd:productionUnitNumber", v.ProductionUnitNumber)
	x.opt("grd:productionUnitName", v.ProductionUnitName)
	x.end("grd:ProductionUnit")
}

func (x *xmlWriter) address(a *Address) {
	if a == nil {
		return
	}
	x.start("grd:Address")
	x.opt("grd:id", a.ID)
	x.opt("grd:addressLabel", a.AddressLabel)
	x.opt("grd:houseNumber", a.HouseNumber)
	x.opt("grd:door", a.Door)
	x.opt("grd:floor", a.Floor)
	x.opt("grd:co", a.Co)
	x.opt("grd:zipCode", a.ZipCode)
	x.opt("grd:city", a.City)
	x.opt("grd:country", a.Country)
	if p := a.AddressPoint; p != nil {
		x.start("grd:AddressPoint")
		x.opt("grd:geographicEastingMeasure", p.GeographicEastingMeasure)
		x.opt("grd:geographicNorthingMeasure", p.GeographicNorthingMeasure)
		x.opt("grd:geographicHeightMeasure", p.GeographicHeightMeasure)
		x.end("grd:AddressPoint")
	}
	x.end("grd:Address")
}

func (x *xmlWriter) unstructured(u *UnstructuredAddress) {
	if u == nil {
		return
	}
	x.start("grd:UnstructuredAddress")
	x.leaf("grd:unstructured", u.Unstructured)
	x.end("grd:UnstructuredAddress")
}

func (x *xmlWriter) contactPoint(c *ContactPoint) {
	if c == nil {
		return
	}
	x.start("ContactPoint")
	x.opt("contactGroup", c.ContactGroup)
	x.leaf("contactPointID", c.ContactPointID)
	x.opt("label", c.Label)
	for _, ci := range c.ContactInfo {
		x.start("ContactInfo")
		x.leaf("label", ci.Label)
		x.leaf("value", ci.Value)
		x.end("ContactInfo")
	}
	x.end("ContactPoint")
}

func (x *xmlWriter) contentData(c *ContentData) {
	x.start("ContentData")
	if v := c.CPRdata; v != nil {
		x.start("grd:CPRdata")
		x.leaf("grd:cprNumber", v.CPRNumber)
		x.opt("grd:name", v.Name)
		x.end("grd:CPRdata")
	}
	if v := c.CVRdata; v != nil {
		x.start("grd:CVRdata")
		x.leaf("grd:cvrNumber", v.CVRNumber)
		x.opt("grd:companyName", v.CompanyName)
		x.end("grd:CVRdata")
	}
	if v := c.MotorVehicle; v != nil {
		x.start("dmv:MotorVehicle")
		x.leaf("dmv:licenseNumber", v.LicenseNumber)
		x.opt("dmv:chassisNumber", v.ChassisNumber)
		x.end("dmv:MotorVehicle")
	}
	if v := c.PropertyNumber; v != nil {
		x.start("grd:PropertyNumber")
		x.leaf("grd:propertyNumber", v.PropertyNumber)
		x.end("grd:PropertyNumber")
	}
	if v := c.CaseID; v != nil {
		x.start("CaseID")
		x.leaf("caseID", v.CaseID)
		x.leaf("caseSystem", v.CaseSystem)
		x.end("CaseID")
	}
	if v := c.KLEdata; v != nil {
		x.start("kle:KLEdata")
		x.leaf("kle:subjectKey", v.SubjectKey)
		x.leaf("kle:version", v.Version)
		x.opt("kle:activityFacet", v.ActivityFacet)
		x.leaf("kle:label", v.Label)
		x.end("kle:KLEdata")
	}
	if v := c.FORMdata; v != nil {
		x.start("form:FORMdata")
		x.leaf("form:taskKey", v.TaskKey)
		x.leaf("form:version", v.Version)
		x.opt("form:activityFacet", v.ActivityFacet)
		x.leaf("form:label", v.Label)
		x.end("form:FORMdata")
	}
	x.productionUnit(c.ProductionUnit)
	if v := c.Education; v != nil {
		x.start("udd:Education")
		x.leaf("udd:educationCode", v.EducationCode)
		x.opt("udd:educationName", v.EducationName)
		x.end("udd:Education")
	}
	x.address(c.Address)
	x.unstructured(c.UnstructuredAddress)
	for _, a := range c.AdditionalContentData {
		x.start("AdditionalContentData")
		x.opt("contentDataType", a.ContentDataType)
		x.leaf("contentDataName", a.ContentDataName)
		x.leaf("contentDataValue", a.ContentDataValue)
		x.end("AdditionalContentData")
	}
	x.end("ContentData")
}

func (x *xmlWriter) body(b *MessageBody) {
	x.start("MessageBody")
	x.leaf("createdDateTime", b.CreatedDateTime)
	x.document(MainDocumentKind, &b.MainDocument)
	for i := range b.AdditionalDocument {
		x.document(AdditionalDocumentKind, &b.AdditionalDocument[i])
	}
	for i := range b.TechnicalDocument {
		x.document(TechnicalDocumentKind, &b.TechnicalDocument[i])
	}
	x.end("MessageBody")
}

func (x *xmlWriter) document(kind DocumentKind, d *Document) {
	name := kind.Element()
	if len(d.Files) == 0 && x.err == nil {
		x.err = fmt.Errorf("memo: %s has no File", name)
	}
	if kind == TechnicalDocumentKind && len(d.Actions) > 0 && x.err == nil {
		x.err = errors.New("memo: a TechnicalDocument has no Actions")
	}
	x.start(name)
	x.opt(kind.idElement(), d.DocumentID)
	x.opt("label", d.Label)
	for _, f := range d.Files {
		x.file(f)
	}
	for i := range d.Actions {
		x.action(&d.Actions[i])
	}
	x.end(name)
}

func (x *xmlWriter) file(f *File) {
	x.start("File")
	x.leaf("encodingFormat", f.EncodingFormat)
	x.leaf("filename", f.Filename)
	x.leaf("language", f.Language)
	x.indent()
	x.raw("<memo:content>")
	if x.err == nil {
		x.err = f.writeBase64(x.w)
	}
	x.raw("</memo:content>")
	x.end("File")
}

// writeBase64 writes the content as base64: copied from the source document
// when it came from one, else encoded from the decoded bytes.
func (f *File) writeBase64(w io.Writer) error {
	c := &f.content
	if !c.hasData && c.open == nil && (c.segs != nil || c.path != "" || c.src != nil) {
		rc, err := f.openBase64()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(w, rc)
		return err
	}
	if c.hasData {
		enc := base64.NewEncoder(base64.StdEncoding, w)
		if _, err := enc.Write(c.data); err != nil {
			return err
		}
		return enc.Close()
	}
	if c.open == nil {
		return nil
	}
	rc, err := c.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	enc := base64.NewEncoder(base64.StdEncoding, w)
	n, err := io.Copy(enc, rc)
	if err != nil {
		return fmt.Errorf("memo: read content of %q: %w", f.Filename, err)
	}
	if c.decoded >= 0 && n != c.decoded {
		return fmt.Errorf("memo: content of %q has %d bytes, declared %d", f.Filename, n, c.decoded)
	}
	return enc.Close()
}

func (x *xmlWriter) action(a *Action) {
	x.start("Action")
	x.leaf("label", a.Label)
	x.leaf("actionCode", a.ActionCode)
	x.opt("startDateTime", a.StartDateTime)
	x.opt("endDateTime", a.EndDateTime)
	if a.Reservation != nil && a.EntryPoint != nil && x.err == nil {
		x.err = errors.New("memo: an Action has a Reservation or an EntryPoint, not both")
	}
	if r := a.Reservation; r != nil {
		x.start("Reservation")
		x.leaf("description", r.Description)
		x.leaf("reservationUUID", r.ReservationUUID)
		x.leaf("abstract", r.Abstract)
		x.leaf("location", r.Location)
		x.leaf("startDateTime", r.StartDateTime)
		x.leaf("endDateTime", r.EndDateTime)
		x.opt("organizerMail", r.OrganizerMail)
		x.opt("organizerName", r.OrganizerName)
		x.end("Reservation")
	}
	if e := a.EntryPoint; e != nil {
		x.start("EntryPoint")
		x.leaf("url", e.URL)
		x.end("EntryPoint")
	}
	x.end("Action")
}

// DateOnly formats t's calendar date as an xs:date (doNotDeliverUntilDate).
func DateOnly(t time.Time) string { return t.Format(time.DateOnly) }

// DateTimeUTC formats t as a memoDateTimeType (UTC with a trailing Z).
func DateTimeUTC(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// NewUUID returns a random version 4 UUID as MeMo wants it.
func NewUUID() string { return uuid.NewString() }
