package sf1601_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/sf1601/sf1601test"
)

// A released Decoder's buffers serve the next requests: each, whatever
// came before it (larger or smaller, with a print part or without, or
// refused half-way), decodes to what it decodes to on buffers of its own.
func TestAReleasedDecodersBuffersServeTheNextRequest(t *testing.T) {
	small := letter(t, memo.Letter{Label: "Små & store"}, nil)
	big := letter(t, memo.Letter{Main: memo.PDF("stor.pdf", bytes.Repeat([]byte("%PDF-1.4 "), 20_000))}, nil)
	bodies := [][]byte{
		must(sf1601test.PHP(small, "Fysisk Post", forsendelse())),
		must(sf1601test.Python(big, "NemSMS")),
		must(sf1601test.Python(small, "Digital Post")),
		[]byte(`<?xml version="1.0"?><kombi_request><KombiValgKode>Automatisk Valg</KombiValgKode><broken`),
		must(sf1601test.PHP(big, "Automatisk Valg", nil)),
	}
	type result struct {
		msg []byte
		req sf1601.Request
		err string
	}
	run := func(body []byte, release bool) result {
		d := sf1601.NewDecoder(bytes.NewReader(body), sf1601.Limits{})
		var msg bytes.Buffer
		var r result
		err := d.Message(&msg)
		if err == nil {
			r.req, err = d.Finish()
		}
		if err != nil {
			r.err = err.Error()
		}
		r.msg = msg.Bytes()
		if release {
			d.Release()
		}
		return r
	}
	want := make([]result, len(bodies))
	for i, body := range bodies {
		want[i] = run(body, false)
	}
	if want[3].err == "" || want[0].req.Print == nil {
		t.Fatalf("the cases are not what they should be: %+v", want)
	}
	for round := range 3 {
		for i, body := range bodies {
			if got := run(body, true); !reflect.DeepEqual(got, want[i]) {
				t.Fatalf("round %d, request %d after released Decoders: %q %+v %v\nwant %q %+v %v", round, i,
					got.msg, got.req, got.err, want[i].msg, want[i].req, want[i].err)
			}
		}
	}
}
