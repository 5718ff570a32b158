package sf1601_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
)

// TestPrologIsJudgedAsAMeMoSentAlone: the same start of a document gets
// the same verdict, code for code, whether it starts a MeMo sent alone to
// the NgDP route (the Validator's prescan, in memory and spooled) or a
// kombi_request carrying that MeMo (the Decoder, then the Validator on the
// Message it writes out): one check, memo.CheckProlog, judges both.
func TestPrologIsJudgedAsAMeMoSentAlone(t *testing.T) {
	v := validator(t)
	now := time.Now()
	alone := letter(t, memo.Letter{}, nil)
	_, message, ok := bytes.Cut(alone, []byte("?>\n"))
	if !ok || !bytes.HasPrefix(message, []byte("<memo:Message ")) {
		t.Fatalf("memo writes a letter starting %q", alone[:min(80, len(alone))])
	}
	long := func(n int) string { return "<!--" + strings.Repeat("x", n) + "-->\n" }
	for _, c := range []struct{ name, prolog, code string }{
		{"UTF-8 declared", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", ""},
		{"utf8 declared, as ElementTree writes it", "<?xml version='1.0' encoding='utf8'?>\n", ""},
		{"UTF-8 BOM", "\xEF\xBB\xBF", ""},
		{"UTF-8 BOM and a declaration", "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", ""},
		{"comments and processing instructions", "<!-- før -->\n<?pi x?>\n", ""},
		{"a prolog longer than the Decoder's read buffer", long(20 << 10), ""},
		{"UTF-16 LE BOM", "\xFF\xFE", memo.CodeEncodingNotSupported},
		{"UTF-16 BE BOM", "\xFE\xFF", memo.CodeEncodingNotSupported},
		{"encoding ISO-8859-1 declared", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n", memo.CodeEncodingNotSupported},
		{"encoding UTF-16 declared", "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n", memo.CodeEncodingNotSupported},
		{"a DOCTYPE", "<!DOCTYPE Message>\n", memo.CodeDoctypeNotAllowed},
		{"a DOCTYPE in lower case after a declaration", "<?xml version=\"1.0\"?>\n<!doctype Message>\n", memo.CodeDoctypeNotAllowed},
		{"an internal entity", "<!DOCTYPE Message [<!ENTITY e \"udvidet\">]>\n", memo.CodeDoctypeNotAllowed},
		{"an external entity (XXE)", "<!DOCTYPE Message [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n", memo.CodeDoctypeNotAllowed},
		{"an external parameter entity", "<!DOCTYPE Message [<!ENTITY % p SYSTEM \"http://127.0.0.1:1/x.dtd\"> %p;]>\n", memo.CodeDoctypeNotAllowed},
		{"an entity declared without a DOCTYPE", "<!ENTITY e \"x\">\n", memo.CodeNotWellFormed},
		{"text before the root", "hej\n", memo.CodeNotWellFormed},
		{"a prolog longer than memo looks", long(memo.PrologLimit), memo.CodePrologTooLong},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := append([]byte(c.prolog), message...)
			kombi := append([]byte(c.prolog), "<kombi_request><KombiValgKode>Digital Post</KombiValgKode>"...)
			kombi = append(append(kombi, message...), "</kombi_request>"...)

			_, err := v.ValidateBytes(doc, now)
			ngdp := verdict(err)
			_, err = v.ValidateReader(bytes.NewReader(doc), now)
			if spooled := verdict(err); spooled != ngdp {
				t.Fatalf("the NgDP route: %s in memory, %s spooled", ngdp, spooled)
			}
			for name, r := range map[string]io.Reader{"whole": bytes.NewReader(kombi), "byte by byte": iotest.OneByteReader(bytes.NewReader(kombi))} {
				msg, _, err := decode(r, sf1601.Limits{})
				if err == nil {
					_, err = v.ValidateBytes(msg, now)
				}
				if got := verdict(err); got != ngdp || got != c.code+" "+string(codeOf(c.code)) {
					t.Errorf("%s: the kombi_request gets %q, the MeMo alone %q; want %q", name, got, ngdp, c.code)
				}
			}
		})
	}
}

// verdict is the field code and the error code of a refusal, " " for an
// acceptance.
func verdict(err error) string {
	var he *hub.Error
	if err != nil && !errors.As(err, &he) {
		return "not coded: " + err.Error()
	}
	return fieldCode(err) + " " + string(hub.ErrorCode(err))
}

// codeOf is the error code a prolog refusal has (none for acceptance).
func codeOf(field string) hub.Code {
	if field == "" {
		return ""
	}
	return hub.Invalid
}
