package accept_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/memo"
)

// TestAHoldDateInAnyXSDateSpellingHolds: doNotDeliverUntilDate is an
// xs:date, which may name a time zone; the schema and the rules accept "2030-06-01Z" and "2030-06-01+01:00",
// and such a letter used to go out at once (its hold read as none: printed,
// delivered and not recallable). Every spelling holds until the start of
// that day in Danish time.
func TestAHoldDateInAnyXSDateSpellingHolds(t *testing.T) {
	v, err := memo.NewValidator(memo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	now := time.Now().UTC()
	date := now.AddDate(0, 0, 30)
	cph, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		t.Fatal(err)
	}
	y, mo, d := date.Date()
	want := time.Date(y, mo, d, 0, 0, 0, 0, cph).UTC()
	for _, spelling := range []func(string) string{
		func(d string) string { return d },
		func(d string) string { return d + "Z" },
		func(d string) string { return d + "+01:00" },
		func(d string) string { return d + "-11:00" },
	} {
		m := memo.NewLetter(memo.Letter{From: senderCVR, To: citizen, DoNotDeliverUntil: date, Main: memo.PDF("brev.pdf", memo.SamplePDF("hej"))})
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		day := memo.DateOnly(date)
		b := bytes.Replace(buf.Bytes(), []byte(">"+day+"<"), []byte(">"+spelling(day)+"<"), 1)
		if bytes.Equal(b, buf.Bytes()) && spelling(day) != day {
			t.Fatalf("the date %s is not in the letter", day)
		}
		parsed, err := v.ValidateBytes(b, now)
		if err != nil {
			t.Fatalf("%q: %v", spelling(day), err)
		}
		if l := accept.LetterOf(parsed, int64(len(b))); !l.NotBefore.Equal(want) {
			t.Errorf("%q: held until %v, want %v", spelling(day), l.NotBefore, want)
		}
	}
}

// TestThePrintAddressIsTheRecipientsNotTheContents: ContentData's address
// is what the letter is about (the official full example names a child's
// institution there); only Recipient/AttentionData's is the recipient's.
func TestThePrintAddressIsTheRecipientsNotTheContents(t *testing.T) {
	m := &memo.Message{Version: memo.Version11, MessageHeader: memo.MessageHeader{MessageType: "DIGITALPOST",
		MessageUUID: "0b5c9c1e-6a53-4a4e-9d43-000000000004", Label: "Ejendomsskat",
		Recipient:   memo.Recipient{RecipientID: citizen, IDType: "CPR", Label: "Fritaget Borger"},
		ContentData: &memo.ContentData{Address: &memo.Address{AddressLabel: "Sommerhusvej", HouseNumber: "9", ZipCode: "4500", City: "Nykøbing Sj"}}}}
	if l := accept.LetterOf(m, 100); len(l.Address) != 0 {
		t.Errorf("the address the letter is about became its print address: %q", l.Address)
	}
	m.MessageHeader.Recipient.AttentionData = &memo.AttentionData{Address: &memo.Address{AddressLabel: "Eksempelvej", HouseNumber: "1", ZipCode: "1234", City: "Demoby"}}
	if l := accept.LetterOf(m, 100); len(l.Address) < 2 || l.Address[1] != "Eksempelvej 1" {
		t.Errorf("the recipient's attention address is not the letter's: %q", l.Address)
	}
}
