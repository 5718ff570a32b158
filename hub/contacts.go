package hub

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ImportReport tells an administrator what a contact-register import did.
type ImportReport struct {
	Accepted int            `json:"accepted"`
	Rejected []RejectedLine `json:"rejected"`
}

// RejectedLine is one line of an import that was not taken.
type RejectedLine struct {
	Line    int    `json:"line"` // 1-based line (CSV) or element index + 1 (JSON)
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// maxRejected bounds the report; the count of accepted lines stays exact.
const maxRejected = 1000

const importBatch = 500

var phoneRe = regexp.MustCompile(`^\+?[0-9]{8,15}$`)

// NormalizeContact checks and normalises one contact-register entry.
func NormalizeContact(c Contact) (Contact, *RejectedLine) {
	c.ID = strings.TrimSpace(c.ID)
	if !ValidCPR(c.ID) && !ValidCVR(c.ID) {
		return c, &RejectedLine{ID: c.ID, Code: "contact.id.invalid", Message: "id must be a CPR (10 digits) or CVR (8 digits) number"}
	}
	switch DigitalStatus(strings.ToUpper(string(c.Status))) {
	case "", Registered:
		c.Status = Registered
	case Exempt, "FRITAGET":
		c.Status = Exempt
	default:
		return c, &RejectedLine{ID: c.ID, Code: "contact.status.invalid", Message: "digitalPost must be REGISTERED or EXEMPT"}
	}
	c.Phone = strings.ReplaceAll(strings.TrimSpace(c.Phone), " ", "")
	if c.Phone != "" && !phoneRe.MatchString(c.Phone) {
		return c, &RejectedLine{ID: c.ID, Code: "contact.phone.invalid", Message: "phone must be 8–15 digits, optionally with a leading +"}
	}
	if c.NemSMS && c.Phone == "" {
		return c, &RejectedLine{ID: c.ID, Code: "contact.nemsms.phone.missing", Message: "NemSMS registration needs a phone number"}
	}
	c.Email = strings.TrimSpace(c.Email)
	if c.Email != "" {
		if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email || len(c.Email) > MaxEmailLen {
			return c, &RejectedLine{ID: c.ID, Code: "contact.email.invalid", Message: "email is not a valid address"}
		}
	}
	c.Name = strings.TrimSpace(c.Name)
	if err := CheckText("contact", "name", "contact.name", c.Name, MaxNameLen, false); err != nil {
		return c, rejectedField(c.ID, err)
	}
	if len(c.Address) > MaxAddressLines {
		return c, &RejectedLine{ID: c.ID, Code: "contact.address.too.long",
			Message: fmt.Sprintf("address has at most %d lines (got %d)", MaxAddressLines, len(c.Address))}
	}
	for i, l := range c.Address {
		c.Address[i] = strings.TrimSpace(l)
		if err := CheckText("contact", "address", "contact.address", c.Address[i], MaxNameLen, false); err != nil {
			return c, rejectedField(c.ID, err)
		}
	}
	return c, nil
}

// MaxAddressLines bounds a contact's postal address (a Danish address
// takes at most six lines).
const MaxAddressLines = 8

// rejectedField is a field error of CheckText as a rejected line.
func rejectedField(id string, err error) *RejectedLine {
	r := &RejectedLine{ID: id, Code: "contact.invalid", Message: err.Error()}
	var e *Error
	if errors.As(err, &e) && len(e.Fields) > 0 {
		r.Code, r.Message = e.Fields[0].Code, e.Fields[0].Message
	}
	return r
}

// maxContactRecord bounds one CSV line or JSON element of an import: it is
// read whole into memory before it is checked.
const maxContactRecord = 64 << 10

// recordBound fails a read once more than maxContactRecord bytes have
// passed since the last record began (next), so that one record cannot
// take memory without limit. It counts what the parser has read, which runs
// ahead of what it has parsed by at most its buffer.
type recordBound struct {
	r io.Reader
	n int64
}

var errRecordTooLong = errors.New("one line or element of the import is longer than 64 KiB")

func (b *recordBound) Read(p []byte) (int, error) {
	if b.n > maxContactRecord+readAhead {
		return 0, errRecordTooLong
	}
	p = p[:min(len(p), maxContactRecord)]
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// readAhead is what the CSV and JSON readers buffer beyond a record.
const readAhead = 64 << 10

// next marks the beginning of a record.
func (b *recordBound) next() { b.n = 0 }

// tooLong is the report's entry for the record the import stopped at.
var tooLong = RejectedLine{Code: "import.record.too.long", Message: "this line or element is longer than 64 KiB; the import stopped here"}

// ContactImporter streams a contact-register import into the store in
// batches. Valid lines are stored even when others are rejected.
type ContactImporter struct {
	Store Contacts
	Now   func() time.Time
}

func (ci *ContactImporter) now() time.Time {
	if ci.Now != nil {
		return ci.Now().UTC()
	}
	return time.Now().UTC()
}

type importState struct {
	ci     *ContactImporter
	ctx    context.Context
	batch  []Contact
	report ImportReport
}

func (s *importState) add(line int, c Contact) error {
	c, rej := NormalizeContact(c)
	if rej != nil {
		s.reject(line, *rej)
		return nil
	}
	c.Updated = s.ci.now()
	s.batch = append(s.batch, c)
	if len(s.batch) >= importBatch {
		return s.flush()
	}
	return nil
}

func (s *importState) reject(line int, r RejectedLine) {
	r.Line = line
	if len(s.report.Rejected) < maxRejected {
		s.report.Rejected = append(s.report.Rejected, r)
	}
}

func (s *importState) flush() error {
	if len(s.batch) == 0 {
		return nil
	}
	if err := s.ci.Store.PutContacts(s.ctx, s.batch); err != nil {
		return err
	}
	s.report.Accepted += len(s.batch)
	s.batch = s.batch[:0]
	return nil
}

// ImportCSV reads CSV with a header row naming some of the columns id,
// digitalPost, nemSms, email, phone, name, address (address lines separated
// by "|"). Unknown columns are refused; id is required.
func (ci *ContactImporter) ImportCSV(ctx context.Context, r io.Reader) (ImportReport, error) {
	st := &importState{ci: ci, ctx: ctx}
	rb := &recordBound{r: r}
	cr := csv.NewReader(rb)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return st.report, &Error{Code: Invalid, Message: "the CSV has no header row", Err: err}
	}
	cols := map[string]int{}
	for i, h := range head {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		switch h {
		case "id", "digitalPost", "nemSms", "email", "phone", "name", "address":
			cols[h] = i
		default:
			return st.report, &Error{Code: Invalid, Message: "unknown CSV column " + strconv.Quote(h),
				Fields: []FieldError{{Resource: "import", Field: h, Code: "import.column.unknown", Message: "columns are id, digitalPost, nemSms, email, phone, name, address"}}}
		}
	}
	if _, ok := cols["id"]; !ok {
		return st.report, &Error{Code: Invalid, Message: "the CSV needs an id column",
			Fields: []FieldError{{Resource: "import", Field: "id", Code: "import.column.missing", Message: "the id column is required"}}}
	}
	get := func(rec []string, k string) string {
		if i, ok := cols[k]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	for {
		if err := ctx.Err(); err != nil {
			return st.report, err
		}
		rb.next()
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errRecordTooLong) {
			line, _ := cr.FieldPos(0)
			st.reject(line+1, tooLong)
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				st.reject(pe.Line, RejectedLine{Code: "import.csv.malformed", Message: pe.Err.Error()})
				if pe.Err == csv.ErrFieldCount {
					continue
				}
				// The reader cannot resynchronise after a quoting error.
				break
			}
			return st.report, Wrap(Invalid, err, "read CSV")
		}
		c := Contact{ID: get(rec, "id"), Status: DigitalStatus(get(rec, "digitalPost")), Email: get(rec, "email"),
			Phone: get(rec, "phone"), Name: get(rec, "name")}
		switch strings.ToLower(get(rec, "nemSms")) {
		case "", "false", "0", "no", "nej":
		case "true", "1", "yes", "ja":
			c.NemSMS = true
		default:
			st.reject(line, RejectedLine{ID: c.ID, Code: "contact.nemsms.invalid", Message: "nemSms must be true or false"})
			continue
		}
		if a := get(rec, "address"); a != "" {
			c.Address = strings.Split(a, "|")
		}
		if err := st.add(line, c); err != nil {
			return st.report, err
		}
	}
	return st.report, st.flush()
}

// ImportJSON reads a JSON array of contacts (the Contact JSON shape),
// decoding one element at a time.
func (ci *ContactImporter) ImportJSON(ctx context.Context, r io.Reader) (ImportReport, error) {
	st := &importState{ci: ci, ctx: ctx}
	rb := &recordBound{r: r}
	dec := json.NewDecoder(rb)
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return st.report, &Error{Code: Invalid, Message: "the JSON import must be an array of contacts",
			Fields: []FieldError{{Resource: "import", Code: "import.json.malformed", Message: "expected '['"}}}
	}
	for n := 1; dec.More(); n++ {
		if err := ctx.Err(); err != nil {
			return st.report, err
		}
		rb.next()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, errRecordTooLong) {
				st.reject(n, tooLong)
				break
			}
			st.reject(n, RejectedLine{Code: "import.json.malformed", Message: err.Error()})
			break
		}
		var c Contact
		rd := json.NewDecoder(strings.NewReader(string(raw)))
		rd.DisallowUnknownFields()
		if err := rd.Decode(&c); err != nil {
			st.reject(n, RejectedLine{Code: "import.json.invalid", Message: fmt.Sprintf("element %d: %v", n, err)})
			continue
		}
		if err := st.add(n, c); err != nil {
			return st.report, err
		}
	}
	return st.report, st.flush()
}
