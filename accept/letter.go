package accept

import (
	"strings"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// LetterOf extracts what routing needs from a validated MeMo.
func LetterOf(m *memo.Message, size int64) hub.Letter {
	h := m.MessageHeader
	l := hub.Letter{
		UUID: strings.ToLower(h.MessageUUID), MessageID: h.MessageID, MessageType: h.MessageType, MemoVersion: m.Version,
		Label: h.Label, SenderID: h.Sender.SenderID, RecipientID: h.Recipient.RecipientID,
		RecipientType: strings.ToUpper(h.Recipient.IDType), PostType: h.PostType, Notification: h.Notification,
		Size: size, Attrs: map[string]string{},
	}
	if h.Recipient.ContactPoint != nil {
		l.ContactPoint = h.Recipient.ContactPoint.ContactPointID
	}
	if h.DoNotDeliverUntilDate != "" {
		// A date is held until the start of that day in Danish time,
		// whatever time zone the xs:date names (as the rules read it).
		if d, ok := memo.ParseDate(h.DoNotDeliverUntilDate); ok {
			y, mo, day := d.Date()
			l.NotBefore = time.Date(y, mo, day, 0, 0, 0, 0, hub.Danish()).UTC()
		}
	}
	if h.MessageCode != "" {
		l.Attrs["messageCode"] = h.MessageCode
	}
	if cd := h.ContentData; cd != nil {
		if cd.KLEdata != nil {
			l.Attrs["KLE"] = cd.KLEdata.SubjectKey
		}
		if cd.FORMdata != nil {
			l.Attrs["FORM"] = cd.FORMdata.TaskKey
		}
		if cd.CaseID != nil {
			l.Attrs["CaseID"] = cd.CaseID.CaseID
		}
		// ContentData's address is the one the letter is about (a
		// property, an institution), never where it is sent.
	}
	if ad := h.Recipient.AttentionData; ad != nil {
		if ad.GlobalLocationNumber != nil {
			l.Attrs["GLN"] = ad.GlobalLocationNumber.GlobalLocationNumber
		}
		if ad.SORdata != nil {
			l.Attrs["SOR"] = ad.SORdata.SORIdentifier
		}
		if ad.Address != nil {
			l.Address = ad.Address.Lines(h.Recipient.Label)
		} else if ad.UnstructuredAddress != nil {
			l.Address = memo.UnstructuredLines(h.Recipient.Label, ad.UnstructuredAddress.Unstructured)
		}
	}
	if b := m.MessageBody; b != nil {
		l.Attachments = len(b.AdditionalDocument)
	}
	return l
}
