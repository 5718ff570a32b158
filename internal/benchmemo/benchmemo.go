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
