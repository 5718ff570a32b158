package memo

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

var fixedNow = time.Date(2025, 9, 1, 12, 0, 0, 0, time.UTC)

func TestBuildLetterRoundTrip(t *testing.T) {
	for _, v := range []string{Version11, Version12} {
		for _, typ := range []string{TypeDigitalPost, TypeNemSMS} {
			t.Run(v+"/"+typ, func(t *testing.T) {
				m := NewLetter(Letter{
					Version: v, Type: typ, From: "12345678", To: "2211771212",
					Label: "Afgørelse <om> & \"dig\"", PostType: PostTypeMyndighedspost,
					ContactPointID:    "241d39f6-998e-4929-b198-ccacbbf4b330",
					DoNotDeliverUntil: fixedNow.AddDate(0, 0, 3), Created: fixedNow,
					Main: PDF("brev.pdf", SamplePDF("Hej")),
					Attachments: []Attachment{
						{Filename: "bilag.txt", Data: []byte("linje 1\r\nlinje 2")},
						{Filename: "stort.txt", Reader: strings.NewReader(strings.Repeat("x", 100_000)), Size: 100_000},
					},
				})
				doc := build(t, m)
				schemaValidate(t, doc, v)
				got, err := ParseBytes(doc)
				if err != nil {
					t.Fatal(err)
				}
				if errs := got.Check(DefaultConfig(), fixedNow); len(errs) != 0 {
					t.Fatalf("built letter breaks rules: %+v", errs)
				}
				// Rebuild from the parsed model: identical bytes, identical model.
				doc2 := build(t, got)
				if !bytes.Equal(doc, doc2) {
					t.Fatalf("parse → build is not stable")
				}
				got2, err := Parse(bytes.NewReader(doc2))
				if err != nil {
					t.Fatal(err)
				}
				if a, b := modelJSON(t, got), modelJSON(t, got2); a != b {
					t.Fatalf("models differ:\n%s\n---\n%s", a, b)
				}
				if typ == TypeNemSMS && got.MessageBody != nil {
					t.Fatal("NemSMS letter has a body")
				}
			})
		}
	}
}

func TestBuildSamplesRoundTrip(t *testing.T) {
	for _, path := range memoSamples(t) {
		if strings.Contains(path, "legacy") {
			continue
		}
		t.Run(path, func(t *testing.T) {
			m, err := ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			doc := build(t, m)
			schemaValidate(t, doc, m.Version)
			m2, err := ParseBytes(doc)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := modelJSON(t, m), modelJSON(t, m2); a != b {
				t.Fatalf("round trip changed the model:\n%s\n---\n%s", a, b)
			}
		})
	}
}

func TestBuildRefusesWhatTheVersionCannotSay(t *testing.T) {
	m, err := ParseFile("testdata/samples/v1.2/MeMo_Full_Example.xml")
	if err != nil {
		t.Fatal(err)
	}
	m.Version = Version11
	if _, err := m.WriteTo(io.Discard); err == nil {
		t.Fatal("wrote a Representative into MeMo 1.1")
	}
	m.Version = Version12
	m.MessageHeader.Label = "bad \x01 control"
	if _, err := m.WriteTo(io.Discard); err == nil {
		t.Fatal("wrote a control character")
	}
}

func TestSamplePDF(t *testing.T) {
	p := SamplePDF("Hello (world)")
	if !bytes.HasPrefix(p, []byte("%PDF-1.4")) || !bytes.HasSuffix(p, []byte("%%EOF\n")) {
		t.Fatalf("not a PDF: %q", p)
	}
}

// BenchmarkBuildLarge writes a message with a 74 MB attachment (about 99 MB
// of MeMo) from a reader: memory stays at the size of the buffers.
func BenchmarkBuildLarge(b *testing.B) {
	const size = 74 << 20
	for i := 0; i < b.N; i++ {
		m := NewLetter(Letter{From: "12345678", To: "2211771212", Main: Attachment{Filename: "a.txt", Reader: io.LimitReader(zeros{}, size), Size: size}})
		n, err := m.WriteTo(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}
