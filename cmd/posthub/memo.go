package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

var memoCommands = []command{
	{"validate", "check MeMo files against the XSD and the hub's business rules", runMemoValidate},
	{"new", "write a valid sample MeMo", runMemoNew},
	{"convert", "convert a MeMo between versions 1.1 and 1.2", runMemoConvert},
	{"rules", "list the business rules and their codes", runMemoRules},
}

func runMemo(env *Env, args []string) int {
	return dispatch(env, "posthub memo", "MeMo tools", memoCommands, args)
}

// fileResult is one file's verdict in `memo validate --json`.
type fileResult struct {
	File        string           `json:"file"`
	Valid       bool             `json:"valid"`
	MemoVersion string           `json:"memoVersion,omitempty"`
	MessageUUID string           `json:"messageUUID,omitempty"`
	Code        string           `json:"code,omitempty"` // the hub error code when invalid
	Message     string           `json:"message,omitempty"`
	Errors      []hub.FieldError `json:"fieldErrors,omitempty"`
}

func runMemoValidate(env *Env, args []string) int {
	fs := newFlagSet(env, "posthub memo validate", "[--json] [--now RFC3339|YYYY-MM-DD] FILE...")
	asJSON := fs.Bool("json", false, "print a JSON array of per-file results")
	nowFlag := fs.String("now", "", "judge time rules as of this instant (RFC 3339 or YYYY-MM-DD; default now)")
	maxSize := fs.Int64("max-size", memo.DefaultMaxSize, "largest accepted MeMo in bytes")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := parseNow(*nowFlag)
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthub memo validate: --now: %v\n", err)
			return 2
		}
		now = t
	}
	cfg := memo.DefaultConfig()
	cfg.MaxSize = *maxSize
	v, err := memo.NewValidator(cfg)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthub memo validate: %v\n", err)
		return 1
	}
	defer v.Close()

	rc := 0
	var results []fileResult
	for _, path := range fs.Args() {
		r := fileResult{File: path, Valid: true}
		m, err := v.ValidateFile(path, now)
		if err != nil {
			rc = 1
			r.Valid = false
			var he *hub.Error
			if errors.As(err, &he) {
				r.Code, r.Message, r.Errors = string(he.Code), he.Message, he.Fields
			} else {
				r.Code, r.Message = string(hub.Internal), err.Error()
			}
		} else {
			r.MemoVersion, r.MessageUUID = m.Version, m.MessageHeader.MessageUUID
		}
		results = append(results, r)
		if *asJSON {
			continue
		}
		if r.Valid {
			fmt.Fprintf(env.Stdout, "%s: valid MeMo %s\n", path, r.MemoVersion)
			continue
		}
		if len(r.Errors) == 0 {
			fmt.Fprintf(env.Stdout, "%s:0: %s: %s\n", path, r.Code, r.Message)
		}
		for _, e := range r.Errors {
			field := e.Field
			if field == "" {
				field = "-"
			}
			fmt.Fprintf(env.Stdout, "%s:%d: %s %s: %s\n", path, e.Line, e.Code, field, e.Message)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return 1
		}
	}
	return rc
}

// parseNow reads an RFC 3339 instant or a date (midday local time, so the
// calendar day is the same in every zone near Denmark).
func parseNow(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseInLocation(time.DateOnly, s, time.Local)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
	}
	return d.Add(12 * time.Hour), nil
}

func runMemoNew(env *Env, args []string) int {
	fs := newFlagSet(env, "posthub memo new", "[--to CPR|CVR] [--from CVR] [--type DIGITALPOST|NEMSMS] [--version 1.1|1.2] [--attachment-size N] [-o FILE]")
	to := fs.String("to", "2211771212", "recipient CPR (10 digits) or CVR (8 digits)")
	from := fs.String("from", "12345678", "sender CVR")
	typ := fs.String("type", memo.TypeDigitalPost, "messageType: DIGITALPOST or NEMSMS")
	version := fs.String("version", memo.Version12, "memoVersion: 1.1 or 1.2")
	label := fs.String("label", "Brev fra posthub", "message label (title)")
	postType := fs.String("post-type", "", "postType, e.g. MYNDIGHEDSPOST or VIRKSOMHEDSPOST")
	delay := fs.String("do-not-deliver-until", "", "doNotDeliverUntilDate, YYYY-MM-DD")
	contactPoint := fs.String("contact-point", "", "recipient contactPointID (a UUID)")
	attSize := fs.Int64("attachment-size", 0, "add a text attachment of this many bytes (streamed; any size)")
	out := fs.String("o", "", "write to FILE instead of standard output")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	*typ = strings.ToUpper(*typ)
	if *typ != memo.TypeDigitalPost && *typ != memo.TypeNemSMS {
		fmt.Fprintf(env.Stderr, "posthub memo new: --type must be DIGITALPOST or NEMSMS\n")
		return 2
	}
	if *version != memo.Version11 && *version != memo.Version12 {
		fmt.Fprintf(env.Stderr, "posthub memo new: --version must be 1.1 or 1.2\n")
		return 2
	}
	if *attSize < 0 || (*attSize > 0 && *typ == memo.TypeNemSMS) {
		fmt.Fprintf(env.Stderr, "posthub memo new: --attachment-size must be positive, and a NemSMS has no documents\n")
		return 2
	}
	l := memo.Letter{
		Version: *version, Type: *typ, From: *from, To: *to, Label: *label, PostType: *postType,
		ContactPointID: *contactPoint,
		Main:           memo.PDF("brev.pdf", memo.SamplePDF(*label)),
	}
	if *delay != "" {
		d, err := time.Parse(time.DateOnly, *delay)
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthub memo new: --do-not-deliver-until: %v\n", err)
			return 2
		}
		l.DoNotDeliverUntil = d
	}
	if *attSize > 0 {
		l.Attachments = []memo.Attachment{{
			Filename: "bilag.txt", MIMEType: "text/plain",
			Reader: io.LimitReader(filler{}, *attSize), Size: *attSize,
		}}
	}
	m := memo.NewLetter(l)
	return writeOutput(env, "posthub memo new", *out, func(w io.Writer) error {
		_, err := m.WriteTo(w)
		return err
	})
}

// filler is endless readable text for generated attachments.
type filler struct{}

func (filler) Read(p []byte) (int, error) {
	const line = "Dette er et bilag genereret af posthub memo new.\n"
	for i := range p {
		p[i] = line[i%len(line)]
	}
	return len(p), nil
}

// writeOutput writes through fn to path (atomically: a temporary file
// renamed into place) or to standard output.
func writeOutput(env *Env, name, path string, fn func(io.Writer) error) int {
	if path == "" || path == "-" {
		if err := fn(env.Stdout); err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".posthub-*")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	err = fn(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func runMemoConvert(env *Env, args []string) int {
	fs := newFlagSet(env, "posthub memo convert", "--to 1.1|1.2 [-o FILE] FILE")
	to := fs.String("to", "", "target memoVersion: 1.1 or 1.2")
	out := fs.String("o", "", "write to FILE instead of standard output")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if fs.NArg() != 1 || (*to != memo.Version11 && *to != memo.Version12) {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	m, err := memo.ParseFile(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthub memo convert: %s: %v\n", path, err)
		return 1
	}
	c, losses, err := memo.Convert(m, *to)
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthub memo convert: %v\n", err)
		return 1
	}
	for _, l := range losses {
		v := ""
		if l.Value != "" {
			v = fmt.Sprintf(" (%q)", l.Value)
		}
		fmt.Fprintf(env.Stderr, "%s: lost %s: %s%s\n", path, l.Path, l.Reason, v)
	}
	return writeOutput(env, "posthub memo convert", *out, func(w io.Writer) error {
		_, err := c.WriteTo(w)
		return err
	})
}

func runMemoRules(env *Env, args []string) int {
	fs := newFlagSet(env, "posthub memo rules", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(memo.Rules); err != nil {
			return 1
		}
		return 0
	}
	for _, r := range memo.Rules {
		fmt.Fprintf(env.Stdout, "%-46s %s\n", r.Code, r.Description)
	}
	return 0
}
