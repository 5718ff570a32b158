package accept_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// The buffer a small body is read into serves the next letter once this
// one is answered, so nothing the hub keeps or answers may refer to it.
// With every buffer overwritten as it goes back to its pool, the stored
// content and message, the receipt (also when a resubmission is answered
// with it), the events and a refusal's fields are still the letter's own.
func TestPooledBodyIsNotKeptAfterTheAnswer(t *testing.T) {
	accept.PoisonPooledBuffers(t)
	w := newWorld(t, t.TempDir())
	w.svc.Ingest.InlineMax = 256 << 10 // the default: content inline
	ctx := context.Background()
	for name, chunked := range map[string]bool{"with its length": false, "chunked": true} {
		t.Run(name, func(t *testing.T) {
			b := letter(t, 0)
			sent := bytes.Clone(b)
			body := func() accept.Body {
				if chunked {
					return accept.Body{R: unknownLength{bytes.NewReader(b)}, Size: -1}
				}
				return accept.Body{R: bytes.NewReader(b), Size: int64(len(b))}
			}
			want, err := memo.ParseBytes(sent)
			if err != nil {
				t.Fatal(err)
			}
			h := want.MessageHeader
			uuid := strings.ToLower(h.MessageUUID)
			r, created, err := w.svc.Letter(ctx, accept.Request{System: w.sender, WantUUID: uuid}, body())
			if err != nil || !created {
				t.Fatalf("Letter = %v, created %v", err, created)
			}
			if r.MessageUUID != uuid || r.MessageID != h.MessageID || r.SystemID != w.sender.ID || r.Status != hub.ReceiptReceived {
				t.Fatalf("receipt %+v, want message %s (%s) from %s", r, uuid, h.MessageID, w.sender.ID)
			}
			m, err := w.store.GetMessage(ctx, uuid)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Content, sent) || m.Size != int64(len(sent)) {
				t.Fatalf("stored content of %d bytes differs from the %d sent", len(m.Content), len(sent))
			}
			if m.MessageID != h.MessageID || m.Label != h.Label || m.RecipientID != citizen || m.SenderCVR != senderCVR {
				t.Fatalf("stored message %+v does not say what the letter does", m)
			}
			evs, err := w.store.PendingEvents(ctx, 1000)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ev := range evs {
				if ev.MessageUUID != uuid {
					continue
				}
				n++
				if ev.Party != citizen || ev.Actor != w.sender.ID || !reflect.DeepEqual(ev.Orgs, []string{senderCVR}) {
					t.Errorf("event %+v", ev)
				}
				if ev.Tag == "MEMO_SEND_RECEIVED" && ev.Detail["size"] != strconv.Itoa(len(sent)) {
					t.Errorf("event %+v", ev)
				}
			}
			if n == 0 {
				t.Fatal("no events of the letter")
			}
			again, created, err := w.svc.Letter(ctx, accept.Request{System: w.sender, WantUUID: uuid}, body())
			if err != nil || created || again != r {
				t.Fatalf("resubmission: %+v, created %v, %v; want the first receipt %+v", again, created, err, r)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		// A rule refusal: its field error names the value it refuses.
		b := bytes.Replace(letter(t, 0), []byte(">"+citizen+"<"), []byte(">"+citizen[1:]+"<"), 1)
		_, wantErr := w.svc.Validator.ValidateBytes(bytes.Clone(b), time.Now())
		_, _, err := w.svc.Letter(ctx, accept.Request{System: w.sender}, accept.Body{R: bytes.NewReader(b), Size: int64(len(b))})
		var got, want *hub.Error
		if !errors.As(err, &got) || !errors.As(wantErr, &want) || len(want.Fields) == 0 {
			t.Fatalf("Letter = %v, the validator alone %v; want field errors", err, wantErr)
		}
		if got.Message != want.Message || !reflect.DeepEqual(got.Fields, want.Fields) {
			t.Fatalf("refusal %+v\nwant %+v", got, want)
		}
	})
}
