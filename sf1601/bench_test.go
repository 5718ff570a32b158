package sf1601_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/sf1601/sf1601test"
)

// BenchmarkDecode measures the envelope's cost on the official full
// example, beside the validation every letter costs anyway.
func BenchmarkDecode(b *testing.B) {
	m, err := memo.ParseFile("../memo/testdata/samples/v1.1/MeMo_Full_Example.xml")
	if err != nil {
		b.Fatal(err)
	}
	// Deliverable today, as internal/cmd/sendbench adjusts it.
	m.MessageHeader.DoNotDeliverUntilDate = ""
	for _, d := range m.Documents() {
		for i := range d.Document.Actions {
			if ep := d.Document.Actions[i].EntryPoint; ep != nil {
				ep.URL = strings.Replace(ep.URL, "http://", "https://", 1)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	alone := buf.Bytes()
	forms := map[string][]byte{"python": must(sf1601test.Python(alone, "Digital Post")), "php": must(sf1601test.PHP(alone, "Digital Post", nil))}
	for name, body := range forms {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			var msg bytes.Buffer
			for i := 0; i < b.N; i++ {
				msg.Reset()
				d := sf1601.NewDecoder(bytes.NewReader(body), sf1601.Limits{})
				if err := d.Message(&msg); err != nil {
					b.Fatal(err)
				}
				if _, err := d.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("validate the MeMo alone, for scale", func(b *testing.B) {
		v := validator(b)
		b.SetBytes(int64(len(alone)))
		for i := 0; i < b.N; i++ {
			if _, err := v.ValidateBytes(alone, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
