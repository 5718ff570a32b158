package sf1601_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/sf1601/sf1601test"
)

// knownCodes are the field codes the Decoder may answer with.
var knownCodes = map[string]bool{
	memo.CodeNotWellFormed: true, memo.CodeDoctypeNotAllowed: true, memo.CodeEncodingNotSupported: true,
	memo.CodePrologTooLong: true, memo.CodeRootInvalid: true, memo.CodeTooLarge: true,
	sf1601.CodeRootInvalid: true, sf1601.CodeChoiceMissing: true, sf1601.CodeChoiceDuplicate: true, sf1601.CodeChoiceUnknown: true,
	sf1601.CodeMessageMissing: true, sf1601.CodeMessageDuplicate: true, sf1601.CodePrintDuplicate: true, sf1601.CodePrintTooLarge: true,
	sf1601.CodeElementUnexpected: true, sf1601.CodeTextUnexpected: true, sf1601.CodeTooLarge: true, sf1601.CodeTooDeep: true,
}

// FuzzKombi feeds the Decoder arbitrary requests: it must not panic, must
// answer every refusal with one of its codes, must stay within its
// bounds, and must decide the same however the body is cut into reads.
func FuzzKombi(f *testing.F) {
	alone := letter(f, memo.Letter{Label: "Æble"}, nil)
	f.Add(must(sf1601test.Python(alone, "Digital Post")))
	f.Add(must(sf1601test.PHP(alone, "Fysisk Post", forsendelse())))
	for _, c := range malformedCases {
		if len(c.body) < 4096 {
			f.Add([]byte(c.body))
		}
	}
	lim := sf1601.Limits{MaxMemo: 64 << 10, MaxPrint: 32 << 10, MaxEnvelope: 4 << 10, MaxDepth: 32}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, req, err := decode(bytes.NewReader(body), lim)
		if err != nil {
			var he *hub.Error
			if !errors.As(err, &he) || len(he.Fields) != 1 || !knownCodes[he.Fields[0].Code] ||
				(he.Code != hub.Invalid && he.Code != hub.TooLarge) {
				t.Fatalf("refusal outside the package's codes: %#v", err)
			}
		} else {
			if int64(len(msg)) > lim.MaxMemo || int64(len(req.Print)) > lim.MaxPrint {
				t.Fatalf("past the bounds: Message %d, print %d bytes", len(msg), len(req.Print))
			}
			if !bytes.HasPrefix(msg, []byte("<")) || !bytes.HasSuffix(msg, []byte(">")) || req.Mode == "" {
				t.Fatalf("decoded to %q, %+v", msg, req)
			}
		}
		msg1, req1, err1 := decode(iotest.OneByteReader(bytes.NewReader(body)), lim)
		if (err == nil) != (err1 == nil) || fieldCode(err) != fieldCode(err1) {
			t.Fatalf("whole: %v; byte by byte: %v", err, err1)
		}
		if err == nil && (!bytes.Equal(msg, msg1) || !reflect.DeepEqual(req, req1)) {
			t.Fatalf("whole and byte by byte differ: %q / %q", msg, msg1)
		}
	})
}
