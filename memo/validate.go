package memo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/posthub/posthub/hub"
)

// Validator checks MeMo documents: size, prescan, XSD (libxml2), then the
// Go model and its business rules. It is safe for concurrent use; the
// compiled schemas are shared, every call has its own libxml2 contexts.
type Validator struct {
	cfg      Config
	spoolDir string

	mu      sync.RWMutex // write-held only by Close, which frees the schemas
	schemas map[string]*xsdSchema

	// streams bounds the XSD checks that run while a body is still
	// arriving (Validator.Spool): each holds an OS thread waiting in
	// libxml2 and a document tree growing at the sender's pace. A body
	// spooled while all are taken is validated after its last byte instead.
	streams chan struct{}
}

// MaxStreamingChecks is how many bodies Validator.Spool checks while they
// arrive, at most, at any one time.
var MaxStreamingChecks = max(4, 2*runtime.GOMAXPROCS(0))

// ValidatorOption adjusts a Validator.
type ValidatorOption func(*Validator)

// WithSpoolDir sets the directory ValidateReader and ValidateSpooled spool
// bodies into (default os.TempDir()). Put it on the file system the blob
// store lives on, so keeping a spooled file is a rename.
func WithSpoolDir(dir string) ValidatorOption { return func(v *Validator) { v.spoolDir = dir } }

// NewValidator compiles the MeMo 1.1 and 1.2 schemas. A zero cfg.MaxSize
// means DefaultMaxSize.
func NewValidator(cfg Config, opts ...ValidatorOption) (*Validator, error) {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	v := &Validator{cfg: cfg, streams: make(chan struct{}, MaxStreamingChecks)}
	for _, o := range opts {
		o(v)
	}
	s, err := compileSchemas()
	if err != nil {
		return nil, err
	}
	v.schemas = s
	return v, nil
}

// Close frees the compiled schemas, after waiting for running validations.
// Later calls fail with Unavailable.
func (v *Validator) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	freeSchemas(v.schemas)
	v.schemas = nil
}

// TooLarge is the refusal of a MeMo over max bytes (code memo.too.large),
// wherever the size is found out: a Content-Length, the spooled bytes.
func TooLarge(max int64) *hub.Error {
	msg := fmt.Sprintf("a MeMo may be at most %d bytes", max)
	return &hub.Error{Code: hub.TooLarge, Message: msg,
		Fields: []hub.FieldError{{Resource: "memo", Code: CodeTooLarge, Message: msg}}}
}

// ValidateReader spools r into the spool directory, validates it like
// ValidateFile and removes the spool file. The returned Message's header
// and body fields are complete, but its Files refer to the removed file and
// cannot be opened: use ValidateSpooled when the content is needed.
// Errors as ValidateFile.
func (v *Validator) ValidateReader(r io.Reader, now time.Time) (*Message, error) {
	m, sp, err := v.ValidateSpooled(r, now)
	if err == nil {
		os.Remove(sp.Path)
	}
	return m, err
}

// ValidateSpooled spools r into the spool directory and validates it like
// ValidateFile. On success the caller owns the file at Spooled.Path (the
// ingest path moves it into the blob store); on failure it is removed.
func (v *Validator) ValidateSpooled(r io.Reader, now time.Time) (*Message, Spooled, error) {
	sp, err := v.Spool(r, v.spoolDir, v.cfg.MaxSize)
	if err != nil {
		return nil, Spooled{}, err
	}
	m, err := v.ValidateSpooledFile(sp, now)
	if err != nil {
		os.Remove(sp.Path)
		return nil, Spooled{}, err
	}
	return m, sp, nil
}

// ValidateFile validates the MeMo in the file at path and returns its
// model. Checks, in order: size (TooLarge, code memo.too.large), the
// prescan (no DOCTYPE, UTF-8, root Message in the MeMo namespace, a
// supported memoVersion), the XSD of that version, then the model's
// business rules. Every problem found by the failing stage is reported:
// Invalid with Fields, each carrying a stable code, the element path and
// the line. libxml2 reads the file through its descriptor; the document is
// never copied into Go memory by the XSD stage.
func (v *Validator) ValidateFile(path string, now time.Time) (*Message, error) {
	f, version, err := v.prescanFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return v.modelBeside(path, now, func() error { return v.xsdFile(f, version) })
}

// modelBeside runs xsd and, beside it on the other core, reads the Go
// model of the file at path, whose prescan has passed (so neither parser
// sees a DOCTYPE): for a large document that hides the model's reading
// behind libxml2's. The model counts only if the XSD passes; then the
// business rules judge it.
func (v *Validator) modelBeside(path string, now time.Time, xsd func() error) (*Message, error) {
	type parsed struct {
		m   *Message
		err error
	}
	model := make(chan parsed, 1)
	go func() {
		m, err := ParseFile(path)
		model <- parsed{m, err}
	}()
	xerr := xsd()
	// Waiting even when the XSD failed keeps a flood of bad documents from
	// piling up parsers that outlive their requests.
	p := <-model
	if xerr != nil {
		return nil, xerr
	}
	if p.err != nil {
		return nil, parseFailure(p.err)
	}
	return v.check(p.m, now)
}

// ValidateSchemaFile runs the stages of ValidateFile up to and including
// the XSD, and returns the document's memoVersion. Errors as ValidateFile.
func (v *Validator) ValidateSchemaFile(path string) (version string, err error) {
	f, version, err := v.prescanFile(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := v.xsdFile(f, version); err != nil {
		return "", err
	}
	return version, nil
}

// prescanFile opens the file at path and runs the size check and the
// prescan on it. On success the caller owns the open file, which is
// positioned at its start, and gets the document's memoVersion.
func (v *Validator) prescanFile(path string) (*os.File, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", hub.Wrap(hub.Internal, err, "cannot open the MeMo")
	}
	version, err := v.prescanOpen(f)
	if err != nil {
		f.Close()
		return nil, "", err
	}
	return f, version, nil
}

func (v *Validator) prescanOpen(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", hub.Wrap(hub.Internal, err, "cannot stat the MeMo")
	}
	if st.Size() > v.cfg.MaxSize {
		return "", TooLarge(v.cfg.MaxSize)
	}
	head := make([]byte, min(st.Size(), prescanLimit))
	if _, err := io.ReadFull(f, head); err != nil {
		return "", hub.Wrap(hub.Internal, err, "cannot read the MeMo")
	}
	pl, perr := prescan(head, st.Size() <= prescanLimit)
	if perr != nil {
		return "", prescanFailure(perr)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", hub.Wrap(hub.Internal, err, "cannot read the MeMo")
	}
	return pl.version, nil
}

// xsdFile validates the open file f against the schema of version.
func (v *Validator) xsdFile(f *os.File, version string) error {
	return v.xsd(version, func(s *xsdSchema) ([]hub.FieldError, error) { return s.validateFile(f) })
}

// ValidateBytes validates a MeMo held in memory, as ValidateFile does but
// without a file: for small documents, where a temporary file would cost
// more than the validation. The Message's Files refer to b, which must not
// change while the Message is used.
//
// The document is parsed once, and no tree is built for it: libxml2's
// validator rides on the parser's SAX events (ph_validate_stream), which
// also record where each element's tags end and what they are called, and
// the Go model is read from b along those records (parseRecorded) instead
// of tokenizing the markup again. A document with any problem is
// validated again the old way, on a tree, so that its errors carry the
// tree's element paths and lines. The accepted and refused documents, the
// model, and every error are those of the two-parse pipeline
// (validateBytesTwoParse), which the differential test holds it to.
func (v *Validator) ValidateBytes(b []byte, now time.Time) (*Message, error) {
	var m *Message
	var perr error
	if _, err := v.validateSchemaBytes(b, func(records []byte) { m, perr = parseRecorded(b, records) }); err != nil {
		return nil, err
	}
	if perr != nil {
		return nil, parseFailure(perr)
	}
	return v.check(m, now)
}

// validateBytesTwoParse is ValidateBytes as it was before the one parse:
// libxml2 parses and validates, then ParseBytes reads b again. The
// differential test compares the two.
func (v *Validator) validateBytesTwoParse(b []byte, now time.Time) (*Message, error) {
	if _, err := v.ValidateSchemaBytes(b); err != nil {
		return nil, err
	}
	m, err := ParseBytes(b)
	if err != nil {
		return nil, parseFailure(err)
	}
	return v.check(m, now)
}

// ValidateSchemaBytes runs the stages of ValidateBytes up to and including
// the XSD, and returns the document's memoVersion.
func (v *Validator) ValidateSchemaBytes(b []byte) (version string, err error) {
	return v.validateSchemaBytes(b, nil)
}

// validateSchemaBytes is ValidateSchemaBytes; valid, when not nil, is
// called with libxml2's element records of a valid document (see
// xsdSchema.run).
func (v *Validator) validateSchemaBytes(b []byte, valid func(records []byte)) (version string, err error) {
	if int64(len(b)) > v.cfg.MaxSize {
		return "", TooLarge(v.cfg.MaxSize)
	}
	pl, perr := prescan(b, true)
	if perr != nil {
		return "", prescanFailure(perr)
	}
	if err := v.xsd(pl.version, func(s *xsdSchema) ([]hub.FieldError, error) { return s.validateBytes(b, valid) }); err != nil {
		return "", err
	}
	return pl.version, nil
}

// xsd runs one schema validation under the read lock that keeps Close from
// freeing the schema underneath it.
func (v *Validator) xsd(version string, run func(*xsdSchema) ([]hub.FieldError, error)) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.schemas == nil {
		return hub.Errorf(hub.Unavailable, "the MeMo validator is closed")
	}
	s := v.schemas[version]
	fields, err := run(s)
	if err != nil {
		return hub.Wrap(hub.Internal, err, "XSD validation failed")
	}
	if len(fields) == 0 {
		return nil
	}
	msg := fmt.Sprintf("the MeMo does not conform to the MeMo %s schema", version)
	if fields[0].Code == CodeNotWellFormed {
		msg = "the MeMo is not well-formed XML"
	}
	return &hub.Error{Code: hub.Invalid, Message: msg, Fields: fields}
}

func (v *Validator) check(m *Message, now time.Time) (*Message, error) {
	if fields := m.Check(v.cfg, now); len(fields) > 0 {
		return nil, &hub.Error{Code: hub.Invalid, Message: "the MeMo breaks the hub's rules", Fields: fields}
	}
	return m, nil
}

func prescanFailure(p *prescanError) *hub.Error {
	msg := "the MeMo is not acceptable"
	switch p.code {
	case CodeNotWellFormed, CodeDoctypeNotAllowed, CodeEncodingNotSupported, CodePrologTooLong:
		msg = "the MeMo is not acceptable XML"
	case CodeVersionMissing, CodeVersionNotSupported:
		msg = "the MeMo version is not supported"
	case CodeRootInvalid:
		msg = "the document is not a MeMo"
	}
	return &hub.Error{Code: hub.Invalid, Message: msg, Fields: []hub.FieldError{{
		Resource: "memo", Field: p.field, Code: p.code, Message: p.msg, RejectedValue: p.value, Line: p.line,
	}}}
}

// parseFailure passes the model parser's coded errors through; anything
// else after a passed XSD is our bug, not the sender's.
func parseFailure(err error) error {
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	return hub.Wrap(hub.Internal, err, "the MeMo passed the schema but could not be read")
}
