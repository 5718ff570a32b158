package sf1601

import (
	"errors"

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
