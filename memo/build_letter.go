package memo

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// Letter is the common case of a MeMo in one value: who sends it to whom,
// what it is called, and its documents. NewLetter turns it into a Message;
// adjust that for anything rarer.
type Letter struct {
	// Version is "1.1" or "1.2" (default).
	Version string
	// Type is DIGITALPOST (default) or NEMSMS. A NemSMS has no documents;
	// its Notification defaults to Label.
	Type string
	// UUID is the messageUUID; default a new random v4 UUID.
	UUID string
	// From is the sender's CVR number; SenderLabel its name (default "Afsender").
	From, SenderLabel string
	// To is the recipient's CPR (10 digits) or CVR (8 digits) number; the id
	// type follows from the length unless ToType says otherwise.
	To, ToType, RecipientLabel string
	// Label is the message title (default "Brev").
	Label string
	// Notification is the short notification text (NemSMS: the SMS).
	Notification string
	// PostType, e.g. MYNDIGHEDSPOST or VIRKSOMHEDSPOST; optional.
	PostType string
	// ContactPointID addresses a contact point of the recipient; optional.
	ContactPointID string
	// DoNotDeliverUntil holds the message until that date; zero: none.
	DoNotDeliverUntil time.Time
	// Created is MessageBody/createdDateTime; default now.
	Created time.Time
	// Mandatory and LegalNotification set the header flags.
	Mandatory, LegalNotification bool
	// Main is the main document's file (required for DIGITALPOST);
	// Attachments become one AdditionalDocument each.
	Main        Attachment
	Attachments []Attachment
}

// Attachment is one file of a letter: its bytes, or a reader of Size bytes.
type Attachment struct {
	Filename string
	// MIMEType is the encodingFormat; default from the filename's extension.
	MIMEType string
	// Language defaults to "da".
	Language string
	Data     []byte
	// Reader, when set, is read once while the message is written; Size is
	// its length in bytes.
	Reader io.Reader
	Size   int64
	// Label is the document label; default the filename.
	Label string
}

// PDF is an attachment of PDF bytes.
func PDF(filename string, data []byte) Attachment {
	return Attachment{Filename: filename, MIMEType: "application/pdf", Data: data}
}

// NewLetter builds the Message for l.
func NewLetter(l Letter) *Message {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	typ := def(l.Type, TypeDigitalPost)
	toType := l.ToType
	if toType == "" {
		toType = IDTypeCPR
		if len(l.To) == 8 {
			toType = IDTypeCVR
		}
	}
	m := &Message{
		Version: def(l.Version, Version12),
		MessageHeader: MessageHeader{
			MessageType:  typ,
			MessageUUID:  def(l.UUID, NewUUID()),
			Label:        def(l.Label, "Brev"),
			Notification: l.Notification,
			PostType:     l.PostType,
			Sender: Sender{
				SenderID: l.From,
				IDType:   IDTypeCVR,
				Label:    def(l.SenderLabel, "Afsender"),
			},
			Recipient: Recipient{
				RecipientID: l.To,
				IDType:      toType,
				Label:       l.RecipientLabel,
			},
		},
	}
	if m.Version == Version11 {
		m.SchVersion = DefaultSchVersion
	}
	h := &m.MessageHeader
	if l.Mandatory || m.Version == Version11 {
		h.Mandatory = Bool(l.Mandatory)
	}
	if l.LegalNotification || m.Version == Version11 {
		h.LegalNotification = Bool(l.LegalNotification)
	}
	if !l.DoNotDeliverUntil.IsZero() {
		h.DoNotDeliverUntilDate = DateOnly(l.DoNotDeliverUntil)
	}
	if l.ContactPointID != "" {
		h.Recipient.ContactPoint = &ContactPoint{ContactPointID: l.ContactPointID}
	}
	if typ == TypeNemSMS {
		if h.Notification == "" {
			h.Notification = h.Label
		}
		return m
	}
	created := l.Created
	if created.IsZero() {
		created = time.Now()
	}
	m.MessageBody = &MessageBody{
		CreatedDateTime: DateTimeUTC(created),
		MainDocument:    l.Main.document(),
	}
	for _, a := range l.Attachments {
		m.MessageBody.AdditionalDocument = append(m.MessageBody.AdditionalDocument, a.document())
	}
	return m
}

func (a Attachment) document() Document {
	f := &File{
		EncodingFormat: a.MIMEType,
		Filename:       a.Filename,
		Language:       a.Language,
	}
	if f.EncodingFormat == "" {
		f.EncodingFormat = MIMETypeFor(a.Filename)
	}
	if f.Language == "" {
		f.Language = "da"
	}
	if a.Reader != nil {
		f.SetContentReader(a.Reader, a.Size)
	} else {
		f.SetContent(a.Data)
	}
	label := a.Label
	if label == "" {
		label = a.Filename
	}
	return Document{Label: label, Files: []*File{f}}
}

// MIMETypeFor guesses the encodingFormat of a filename from its extension
// (the inverse of the file.extension.not.allowed rule); default
// application/octet-stream.
func MIMETypeFor(filename string) string {
	ext := extension(filename)
	best := ""
	for mt, exts := range mimeExtensions {
		for _, e := range exts {
			if e == ext && (best == "" || mt < best) {
				best = mt
			}
		}
	}
	if best == "application/xml" {
		best = "text/xml"
	}
	if best == "" {
		return "application/octet-stream"
	}
	return best
}

// SamplePDF returns a small, valid one-page PDF showing text (ASCII), for
// samples and tests.
func SamplePDF(text string) []byte {
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '(' || r == ')' || r == '\\' {
			return '?'
		}
		return r
	}, text)
	stream := fmt.Sprintf("BT /F1 18 Tf 72 720 Td (%s) Tj ET", text)
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(stream), stream),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}
