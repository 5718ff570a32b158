package sf1601

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/schemas"
)

// PrintSchema checks fjernprint parts against the OIO fjernprint schemas
// (schemas.Fjernprint: a ForsendelseISamling holding one ForsendelseI).
// Safe for concurrent use.
type PrintSchema struct{ s *memo.Schema }

// NewPrintSchema compiles the embedded fjernprint schemas.
func NewPrintSchema() (*PrintSchema, error) {
	s, err := memo.CompileSchema(schemas.Fjernprint, "fjernprint", NSFjernprint)
	if err != nil {
		return nil, err
	}
	return &PrintSchema{s: s}, nil
}

// Close frees the compiled schema.
func (p *PrintSchema) Close() { p.s.Close() }

// Check validates the request's fjernprint part, when it has one. An
// invalid part is Invalid with every problem libxml2 found, each with
// Resource "fjernprint", its schema.* or xml.* code, its path under
// /kombi_request and its line in the request.
func (p *PrintSchema) Check(req Request) error {
	if req.Print == nil {
		return nil
	}
	fields, err := p.s.ValidateBytes(req.Print)
	if err != nil {
		return err
	}
	if len(fields) == 0 {
		return nil
	}
	for i := range fields {
		if fields[i].Field != "" {
			fields[i].Field = "/kombi_request" + fields[i].Field
		}
		if fields[i].Line > 0 {
			fields[i].Line += req.PrintLine - 1
		}
	}
	return &hub.Error{Code: hub.Invalid, Message: "the fjernprint part (ForsendelseISamling) does not conform to the OIO fjernprint schema", Fields: fields}
}

// InRequest points the lines of a MeMo validation error into the request:
// the Message was validated as a document of its own, whose first line is
// the request's MessageLine. Field paths stay the MeMo's
// (/Message/MessageHeader/…), as for a MeMo sent alone. A refused mode is
// the request's KombiValgKode. Other errors are returned as they are.
func (r Request) InRequest(err error) error {
	var he *hub.Error
	if !errors.As(err, &he) || len(he.Fields) == 0 {
		return err
	}
	out := *he
	out.Fields = make([]hub.FieldError, len(he.Fields))
	for i, f := range he.Fields {
		if f.Resource == "memo" && f.Line > 0 && r.MessageLine > 1 {
			f.Line += r.MessageLine - 1
		}
		if f.Resource == "request" && f.Field == "mode" {
			// The mode is the request's KombiValgKode.
			f.Resource, f.Field, f.RejectedValue = "kombi", "/kombi_request/KombiValgKode", r.Choice
		}
		out.Fields[i] = f
	}
	return &out
}

// PrintRecipient is whom a fjernprint part sends its paper to.
type PrintRecipient struct {
	// ID is the CPR or CVR number of its AfsendelseModtager, "" when it
	// names none.
	ID string
	// Address is its ModtagerAdresse as postal lines (name, c/o, street,
	// …, post code and district), nil when it has none.
	Address []string
}

// Recipient reads the recipient of a fjernprint part that has passed
// Check. A part whose ForsendelseI elements name different recipients or
// addresses is Invalid: the letter has one recipient.
func Recipient(print []byte) (PrintRecipient, error) {
	var out PrintRecipient
	seen := false
	d := xml.NewDecoder(bytes.NewReader(print))
	var cur *PrintRecipient // the ForsendelseModtager being read
	var text strings.Builder
	fields := map[string]string{}
	var lines []string
	inAddress := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return PrintRecipient{}, hub.Wrap(hub.Invalid, err, "the fjernprint part cannot be read")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			text.Reset()
			switch t.Name.Local {
			case "ForsendelseModtager":
				cur = &PrintRecipient{}
			case "ModtagerAdresse":
				inAddress, fields, lines = cur != nil, map[string]string{}, nil
			}
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			v := strings.TrimSpace(text.String())
			text.Reset()
			switch name := t.Name.Local; {
			case cur == nil:
			case name == "CPRnummerIdentifikator" || name == "CVRnummerIdentifikator":
				cur.ID = v
			case name == "ModtagerAdresse":
				cur.Address, inAddress = addressLines(fields, lines), false
			case name == "ForsendelseModtager":
				if seen && (cur.ID != out.ID || strings.Join(cur.Address, "\n") != strings.Join(out.Address, "\n")) {
					return PrintRecipient{}, hub.InvalidField("kombi", "ForsendelseModtager", CodePrintRecipients,
						"every ForsendelseI of a kombi_request goes to the letter's one recipient", cur.ID)
				}
				out, seen, cur = *cur, true, nil
			case inAddress && strings.HasPrefix(name, "PostalAddress") && strings.HasSuffix(name, "LineText"):
				lines = append(lines, v)
			case inAddress:
				fields[name] = v
			}
		}
	}
	return out, nil
}

// addressLines writes a ModtagerAdresse (KontaktOplysningType) as postal
// lines, as the MeMo's own addresses are written (memo.Address.Lines): the
// street form with its fjernprint-only lines (a delivery sublocation, a
// post office box) beside the street, or the free lines with their post
// code.
func addressLines(f map[string]string, free []string) []string {
	if len(free) > 0 {
		if pc := strings.TrimSpace(f["PostCodeIdentifier"] + " " + f["DistrictName"]); pc != "" {
			free = append(free, pc)
		}
		if c := f["CountryIdentificationCode"]; c != "" && !strings.EqualFold(c, "DK") {
			free = append(free, c)
		}
		return memo.UnstructuredLines(f["PersonName"], strings.Join(free, "\n"))
	}
	box := f["PostOfficeBoxIdentifier"]
	if box != "" {
		box = "Postboks " + box
	}
	a := memo.Address{Co: f["CoNavn"], AddressLabel: f["StreetName"], HouseNumber: f["StreetBuildingIdentifier"],
		Floor: f["FloorIdentifier"], Door: f["SuiteIdentifier"], ZipCode: f["PostCodeIdentifier"], City: f["DistrictName"],
		Country: f["CountryIdentificationCode"]}
	return a.Lines(f["PersonName"], f["MailDeliverySublocationIdentifier"], box)
}
