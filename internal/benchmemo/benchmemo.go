// Package benchmemo makes the letter the send benchmarks submit: a MeMo
// (make bench uses the official MeMo_Full_Example) adjusted to be
// deliverable from one sender to one recipient, with a messageUUID that
// each submission overwrites in place, so that every request is a new
// letter of the same bytes otherwise.
package benchmemo

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/posthub/posthub/memo"
)

// Letter is the adjusted MeMo and where its messageUUID is.
type Letter struct {
	Body []byte
	at   int
}

// FromFile reads the MeMo at path and makes it a letter from the CVR from
// to the CPR or CVR to: no hold date, no contact point, forward or reply
// data, CPR/CVR content data, and https entry points (the rules refuse
// http ones).
func FromFile(path, from, to string) (*Letter, error) {
	m, err := memo.ParseFile(path)
	if err != nil {
		return nil, err
	}
	h := &m.MessageHeader
	h.MessageUUID = memo.NewUUID()
	h.DoNotDeliverUntilDate = ""
	h.Sender.SenderID, h.Sender.IDType = from, memo.IDTypeCVR
	h.Recipient.RecipientID, h.Recipient.IDType = to, memo.IDTypeCPR
	if len(to) == 8 {
		h.Recipient.IDType = memo.IDTypeCVR
	}
	h.Recipient.ContactPoint, h.ForwardData, h.ReplyData = nil, nil, nil
	if h.ContentData != nil {
		h.ContentData.CPRdata, h.ContentData.CVRdata = nil, nil
	}
	for _, d := range m.Documents() {
		for i := range d.Document.Actions {
			if ep := d.Document.Actions[i].EntryPoint; ep != nil {
				ep.URL = strings.Replace(ep.URL, "http://", "https://", 1)
			}
		}
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		return nil, err
	}
	at := bytes.Index(b.Bytes(), []byte(h.MessageUUID))
	if at < 0 {
		return nil, errors.New("benchmemo: the messageUUID is not in the written MeMo")
	}
	return &Letter{Body: b.Bytes(), at: at}, nil
}

// Copy is a letter of its own with the same bytes, for another sender.
func (l *Letter) Copy() *Letter { return &Letter{Body: bytes.Clone(l.Body), at: l.at} }

// Kombi is the letter wrapped in an SF1601 kombi_request with
// KombiValgKode "Automatisk Valg" (the NgDP route's default mode), as
// make bench's -kombi load sends it: the MeMo's bytes unchanged after its
// XML declaration.
func (l *Letter) Kombi() *Letter {
	memoXML := l.Body
	if bytes.HasPrefix(memoXML, []byte("<?xml")) {
		if i := bytes.Index(memoXML, []byte("?>")); i >= 0 {
			memoXML = bytes.TrimLeft(memoXML[i+2:], "\r\n")
		}
	}
	head := "<?xml version=\"1.0\"?>\n<kombi_request><KombiValgKode>Automatisk Valg</KombiValgKode>"
	b := append(append([]byte(head), memoXML...), "</kombi_request>\n"...)
	return &Letter{Body: b, at: len(head) + l.at - (len(l.Body) - len(memoXML))}
}

// Next writes the n-th messageUUID into Body and returns it (lower case,
// as a sender names it in memo-message-uuid).
func (l *Letter) Next(n int) string {
	var id [36]byte
	copy(id[:], "8c2ea15d-61fb-4ba9-9366-000000000000")
	hex := strconv.AppendInt(make([]byte, 0, 12), int64(n)&0xffffffffffff, 16)
	copy(id[36-len(hex):], hex)
	copy(l.Body[l.at:], id[:])
	return string(id[:])
}
