package memo

import (
	"testing"

	"github.com/posthub/posthub/schemas"
)

// TestCompileSchemaValidatesOtherDocuments: an embedded schema beside
// MeMo's (the fjernprint one) compiles and judges documents with the same
// codes, after the same refusal of DOCTYPE.
func TestCompileSchemaValidatesOtherDocuments(t *testing.T) {
	s, err := CompileSchema(schemas.Fjernprint, "fjernprint", "urn:oio:fjernprint:1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const ns = `xmlns="urn:oio:fjernprint:1.0.0"`
	forsendelse := `<ForsendelseI><AfsendelseIdentifikator>a-1</AfsendelseIdentifikator>` +
		`<FilformatNavn xmlns="urn:oio:dkal:1.0.0">pdf</FilformatNavn><MeddelelseIndholdData xmlns="urn:oio:dkal:1.0.0">VGVzdA==</MeddelelseIndholdData>` +
		`<DokumentParametre/></ForsendelseI>`
	for _, c := range []struct{ name, doc, code, field string }{
		{"valid", `<ForsendelseISamling ` + ns + `>` + forsendelse + `</ForsendelseISamling>`, "", ""},
		{"missing element", `<ForsendelseISamling ` + ns + `><ForsendelseI><DokumentParametre/></ForsendelseI></ForsendelseISamling>`,
			CodeSchemaElementUnexpect, "/ForsendelseISamling/ForsendelseI/DokumentParametre"},
		{"two ForsendelseI", `<ForsendelseISamling ` + ns + `>` + forsendelse + forsendelse + `</ForsendelseISamling>`,
			CodeSchemaElementUnexpect, "/ForsendelseISamling/ForsendelseI"},
		{"DOCTYPE", `<!DOCTYPE x [<!ENTITY a "b">]><ForsendelseISamling ` + ns + `/>`, CodeDoctypeNotAllowed, ""},
		{"not well-formed", `<ForsendelseISamling ` + ns + `><a></ForsendelseISamling>`, CodeNotWellFormed, ""},
		{"unknown root", `<Brev ` + ns + `/>`, CodeSchemaElementUnexpect, ""},
	} {
		fields, err := s.ValidateBytes([]byte(c.doc))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.code == "" {
			if len(fields) > 0 {
				t.Errorf("%s: %+v", c.name, fields)
			}
			continue
		}
		if len(fields) == 0 || fields[0].Code != c.code || fields[0].Resource != "fjernprint" || (c.field != "" && fields[0].Field != c.field) {
			t.Errorf("%s: %+v; want %s at %s", c.name, fields, c.code, c.field)
		}
	}
	s.Close()
	if _, err := s.ValidateBytes([]byte("<x/>")); err == nil {
		t.Error("a closed schema validated")
	}
}
