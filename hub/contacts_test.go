package hub

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
)

// contactSink is a Contacts that keeps what it is given (a unit-test fake).
type contactSink struct{ got []Contact }

func (s *contactSink) PutContacts(_ context.Context, cs []Contact) error {
	s.got = append(s.got, cs...)
	return nil
}
func (s *contactSink) GetContact(context.Context, string) (Contact, error) { return Contact{}, nil }
func (s *contactSink) DeleteContact(context.Context, string) error         { return nil }

// countingReader counts what was read of it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestContactFieldsAreBounded: a contact's name and address lines are text
// of at most MaxNameLen characters, at most MaxAddressLines of them; the
// entry is rejected with the field's code otherwise.
func TestContactFieldsAreBounded(t *testing.T) {
	for _, c := range []struct {
		name string
		c    Contact
		code string
	}{
		{"a name at the bound", Contact{ID: "0101701234", Name: strings.Repeat("æ", MaxNameLen)}, ""},
		{"a name over it", Contact{ID: "0101701234", Name: strings.Repeat("æ", MaxNameLen+1)}, "contact.name.too.long"},
		{"a name with a control character", Contact{ID: "0101701234", Name: "a\x00b"}, "contact.name.invalid"},
		{"six address lines", Contact{ID: "0101701234", Address: make([]string, 6)}, ""},
		{"too many address lines", Contact{ID: "0101701234", Address: make([]string, MaxAddressLines+1)}, "contact.address.too.long"},
		{"an address line over the bound", Contact{ID: "0101701234", Address: []string{"Vej 1", strings.Repeat("x", MaxNameLen+1)}}, "contact.address.too.long"},
	} {
		_, rej := NormalizeContact(c.c)
		got := ""
		if rej != nil {
			got = rej.Code
		}
		if got != c.code {
			t.Errorf("%s: %q, want %q", c.name, got, c.code)
		}
	}
}

// TestImportStopsAtAnOverlongRecord: one CSV line or JSON element is read
// whole before it is checked, so one longer than 64 KiB ends the import
// there — what came before is stored and reported, the rest of the upload
// is not read — instead of being held in memory whatever its size. Long
// imports of ordinary lines are not affected.
func TestImportStopsAtAnOverlongRecord(t *testing.T) {
	ctx := context.Background()
	var csv, js strings.Builder
	csv.WriteString("id,name\n")
	js.WriteString("[")
	for i := range 3000 {
		fmt.Fprintf(&csv, "%010d,Borger %d\n", 101700000+i, i)
		fmt.Fprintf(&js, `{"id":"%010d","digitalPost":"REGISTERED","name":"Borger %d"},`, 101700000+i, i)
	}
	huge := strings.Repeat("x", 20<<20)
	csvBody := csv.String() + "0202021234," + huge + "\n0303031234,Efter\n"
	jsBody := js.String() + `{"id":"0202021234","name":"` + huge + `"},{"id":"0303031234"}]`
	for _, c := range []struct {
		name string
		run  func(ci *ContactImporter, r io.Reader) (ImportReport, error)
		body string
	}{
		{"CSV", func(ci *ContactImporter, r io.Reader) (ImportReport, error) { return ci.ImportCSV(ctx, r) }, csvBody},
		{"JSON", func(ci *ContactImporter, r io.Reader) (ImportReport, error) { return ci.ImportJSON(ctx, r) }, jsBody},
	} {
		t.Run(c.name, func(t *testing.T) {
			sink := &contactSink{}
			in := &countingReader{r: strings.NewReader(c.body)}
			rep, err := c.run(&ContactImporter{Store: sink}, in)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Accepted != 3000 || len(sink.got) != 3000 {
				t.Errorf("accepted %d, stored %d; want the 3,000 before the long record", rep.Accepted, len(sink.got))
			}
			if len(rep.Rejected) != 1 || rep.Rejected[0].Code != "import.record.too.long" {
				t.Errorf("rejected %+v", rep.Rejected)
			}
			if read := in.n - int64(len(c.body)-len(huge)); read > 1<<20 {
				t.Errorf("read %d bytes of the 20 MiB record", read)
			}
		})
	}
}
