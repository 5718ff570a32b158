package memo

import (
	"bytes"
	"strings"
	"testing"
)

func TestConvertSamples(t *testing.T) {
	for _, path := range memoSamples(t) {
		if strings.Contains(path, "legacy") {
			continue
		}
		for _, to := range []string{Version11, Version12} {
			t.Run(path+"→"+to, func(t *testing.T) {
				m, err := ParseFile(path)
				if err != nil {
					t.Fatal(err)
				}
				before := modelJSON(t, m)
				c, losses, err := Convert(m, to)
				if err != nil {
					t.Fatal(err)
				}
				if modelJSON(t, m) != before {
					t.Fatal("Convert modified its input")
				}
				var buf bytes.Buffer
				if _, err := c.WriteTo(&buf); err != nil {
					t.Fatal(err)
				}
				schemaValidate(t, buf.Bytes(), to)
				back, err := ParseBytes(buf.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if back.Version != to {
					t.Fatalf("version %s", back.Version)
				}
				wantLoss := strings.Contains(path, "v1.2/MeMo_Full") && to == Version11
				if wantLoss != (len(losses) > 0) {
					t.Fatalf("losses %+v", losses)
				}
				if wantLoss {
					paths := []string{losses[0].Path, losses[1].Path}
					if paths[0] != "/Message/MessageHeader/Sender/Representative" || paths[1] != "/Message/MessageHeader/ForwardData/originalRepresentative" {
						t.Fatalf("losses %+v", losses)
					}
				}
				// Back to the original version: everything but the losses survives.
				orig, _, err := Convert(back, m.Version)
				if err != nil {
					t.Fatal(err)
				}
				if !wantLoss && normalised(t, orig) != normalised(t, m) {
					t.Fatalf("round trip %s → %s → %s changed the model", m.Version, to, m.Version)
				}
			})
		}
	}
}

// normalised is m's model with the schema-default booleans (false) made
// implicit: 1.1 requires mandatory and legalNotification, 1.2 does not.
func normalised(t *testing.T, m *Message) string {
	c, _, err := Convert(m, m.Version)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []**bool{&c.MessageHeader.Mandatory, &c.MessageHeader.LegalNotification, &c.MessageHeader.Reply} {
		if *b != nil && !**b {
			*b = nil
		}
	}
	return modelJSON(t, c)
}

func TestConvertReportsSchVersion(t *testing.T) {
	m := validLetter()
	m.Version, m.SchVersion = Version11, "1.1.7"
	_, losses, err := Convert(m, Version12)
	if err != nil || len(losses) != 1 || losses[0].Path != "/Message/@memoSchVersion" || losses[0].Value != "1.1.7" {
		t.Fatalf("%v %+v", err, losses)
	}
	if _, _, err := Convert(m, "1.0"); err == nil {
		t.Fatal("converted to 1.0")
	}
}

func TestConvert12To11FillsRequiredDefaults(t *testing.T) {
	m, err := ParseFile("testdata/samples/v1.2/MeMo_Minimum_Example.xml")
	if err != nil {
		t.Fatal(err)
	}
	c, losses, err := Convert(m, Version11)
	if err != nil || len(losses) != 0 {
		t.Fatal(err, losses)
	}
	h := c.MessageHeader
	if c.SchVersion != DefaultSchVersion || h.Mandatory == nil || *h.Mandatory || h.LegalNotification == nil || *h.LegalNotification {
		t.Fatalf("%+v", c)
	}
}
