package memo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/posthub/posthub/hub"
)

// Schema is an embedded XML Schema other than MeMo's, for a document that
// travels beside a MeMo (SF1601's fjernprint part). It is compiled and
// run by the same libxml2 layer as the MeMo schemas and under the same
// rules: only embedded files, relative imports, no network, and no DTD —
// a DOCTYPE is refused before libxml2 sees the document. Safe for
// concurrent use.
type Schema struct {
	resource string
	ns       string

	mu sync.RWMutex // write-held only by Close
	s  *xsdSchema
}

// CompileSchema compiles the embedded schema whose entry file is entry
// (a path inside schemas.FS, e.g. schemas.Fjernprint); only the files in
// entry's folder are used. resource names the document in the field
// errors ValidateBytes reports; targetNS, when not "", is dropped from the
// element names in their messages as the MeMo namespace is from MeMo's.
func CompileSchema(entry, resource, targetNS string) (*Schema, error) {
	initLibxml2()
	folder := filepath.ToSlash(filepath.Dir(entry)) + "/"
	dir, err := writeSchemaFiles(func(path string) bool { return strings.HasPrefix(path, folder) })
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := compileSchema(filepath.Join(dir, filepath.FromSlash(entry)))
	if err != nil {
		return nil, fmt.Errorf("memo: compile %s: %w", entry, err)
	}
	return &Schema{resource: resource, ns: targetNS, s: s}, nil
}

// ValidateBytes checks the document b against the schema. It returns nil
// when b is valid, and otherwise every problem found (capped as MeMo's
// are), each with its code (xml.doctype.not.allowed,
// xml.encoding.not.supported, xml.not.well.formed, schema.*), element path
// and line, and Resource set to the schema's resource name. The error is
// for the hub's own failures: Unavailable after Close, Internal.
func (s *Schema) ValidateBytes(b []byte) ([]hub.FieldError, error) {
	if _, _, refusal := CheckProlog(b, true); refusal != nil {
		refusal.Resource = s.resource
		return []hub.FieldError{*refusal}, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.s == nil {
		return nil, hub.Errorf(hub.Unavailable, "the %s schema is closed", s.resource)
	}
	fields, err := s.s.validateBytes(b, nil)
	if err != nil {
		return nil, hub.Wrap(hub.Internal, err, "XSD validation failed")
	}
	for i := range fields {
		fields[i].Resource = s.resource
		if s.ns != "" {
			fields[i].Message = strings.ReplaceAll(fields[i].Message, "{"+s.ns+"}", "")
		}
	}
	return fields, nil
}

// Close frees the compiled schema, after waiting for running validations.
func (s *Schema) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s != nil {
		freeSchemas(map[string]*xsdSchema{"": s.s})
		s.s = nil
	}
}
