package sf1601_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/sf1601/sf1601test"
)

// TestTheRecipientOfAFjernprintPart: the recipient and the address a
// fjernprint part names are read from it (they were ignored: the paper
// went to the register's address, or nowhere when the register had none,
// and a part for another person travelled with the letter unnoticed).
func TestTheRecipientOfAFjernprintPart(t *testing.T) {
	part := sf1601test.ForsendelseI("x-1", "0101701234", "Registreret Borger", "Eksempelvej", "1", "1234", memo.SamplePDF("Hej"))
	samling := []byte(`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0">` + string(part) + `</ForsendelseISamling>`)
	ps, err := sf1601.NewPrintSchema()
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := ps.Check(sf1601.Request{Print: samling}); err != nil {
		t.Fatalf("the test's part: %v", err)
	}
	got, err := sf1601.Recipient(samling)
	if err != nil {
		t.Fatal(err)
	}
	want := sf1601.PrintRecipient{ID: "0101701234", Address: []string{"Registreret Borger", "Eksempelvej 1", "1234"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recipient %+v, want %+v", got, want)
	}
	// Two parts for two people: refused.
	other := sf1601test.ForsendelseI("x-2", "0202702345", "En Anden", "Andenvej", "7", "9999", memo.SamplePDF("Hej"))
	two := bytes.Replace(samling, []byte("</ForsendelseISamling>"), append(other, "</ForsendelseISamling>"...), 1)
	if _, err := sf1601.Recipient(two); !hub.Is(err, hub.Invalid) {
		t.Errorf("two recipients: %v, want Invalid", err)
	}
	// No AfsendelseModtager, no address: nothing named.
	bare := []byte(`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0"><ForsendelseI/></ForsendelseISamling>`)
	if got, err := sf1601.Recipient(bare); err != nil || got.ID != "" || got.Address != nil {
		t.Errorf("a part naming nobody: %+v %v", got, err)
	}
}
