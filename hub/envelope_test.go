package hub_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/fs"
)

type envelopeWorld struct {
	store *bolt.Store
	blobs *fs.Store
	in    *hub.Ingest
	sys   hub.System
}

func newEnvelopeWorld(t *testing.T, inlineMax int64) envelopeWorld {
	t.Helper()
	h := hubtest.Open(t)
	sys := hub.System{ID: "sender", OrgCVR: "11111111", Role: hub.SenderSystem, Active: true}
	h.Contacts(hub.Contact{ID: "0202702345", Status: hub.Exempt, Address: []string{"Fritaget Borger", "Eksempelvej 1", "1234 Demoby"}})
	in := h.Ingest(hub.StoreEvents{Store: h.Store}, inlineMax)
	return envelopeWorld{store: h.Store, blobs: h.Blobs, in: in, sys: sys}
}

func (w envelopeWorld) submit(t *testing.T, ctx context.Context, to string, mode hub.Mode, env hub.Envelope) (hub.Receipt, string) {
	t.Helper()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-" + strings.Repeat("0", 12-len(to)) + to
	body := []byte("<memo:Message>" + uuid + "</memo:Message>")
	sum := sha256.Sum256(body)
	r, _, err := w.in.Submit(ctx, hub.Submission{System: w.sys, Body: body, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Mode: mode, Envelope: env, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: "11111111", RecipientID: to, RecipientType: "CPR", Size: int64(len(body))}})
	if err != nil {
		t.Fatal(err)
	}
	return r, uuid
}

// TestEnvelopePrintTravelsToThePrintSpool: the print rendition a
// transport hands over rides on the print delivery — inline when small, as
// a blob when not — reaches the print spool beside the MeMo, and leaves
// nothing behind once the provider took it. The transaction id lands on
// the receipt and the MEMO_SEND_RECEIVED event.
func TestEnvelopePrintTravelsToThePrintSpool(t *testing.T) {
	fjernprint := []byte(`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0"><ForsendelseI/></ForsendelseISamling>`)
	for _, c := range []struct {
		name      string
		inlineMax int64
	}{{"inline", 1 << 20}, {"blob", 0}} {
		t.Run(c.name, func(t *testing.T) {
			w := newEnvelopeWorld(t, c.inlineMax)
			ctx := context.Background()
			r, uuid := w.submit(t, ctx, "0202702345", hub.ModePrintOnly, hub.Envelope{TransactionID: "tx-1", Print: fjernprint})
			if r.TransactionID != "tx-1" || r.Status != hub.ReceiptReceived {
				t.Fatalf("receipt %+v", r)
			}
			ds, err := w.store.DeliveriesOf(ctx, uuid)
			if err != nil || len(ds) != 1 || ds[0].Channel != hub.ChannelPrint {
				t.Fatalf("deliveries %+v %v", ds, err)
			}
			key := ds[0].Meta[hub.MetaPrintKey]
			if c.inlineMax > 0 && (ds[0].Meta[hub.MetaPrint] != string(fjernprint) || key != "") {
				t.Fatalf("inline: meta %v", ds[0].Meta)
			}
			if c.inlineMax == 0 {
				if key == "" {
					t.Fatalf("blob: meta %v", ds[0].Meta)
				}
				if _, err := w.blobs.Stat(ctx, key); err != nil {
					t.Fatalf("blob %s: %v", key, err)
				}
			}
			pending, _ := w.store.PendingEvents(ctx, 100)
			var seen bool
			for _, e := range pending {
				seen = seen || e.Tag == "MEMO_SEND_RECEIVED" && e.Detail["transactionId"] == "tx-1"
			}
			if !seen {
				t.Errorf("no MEMO_SEND_RECEIVED with the transaction id in %+v", pending)
			}

			spool := t.TempDir()
			ob := &hub.Outbox{Store: w.store, Blobs: w.blobs, Queue: hub.PrintQueue, Holder: "t", Lease: time.Minute,
				Dispatcher: hub.SpoolDispatcher{Dir: spool}}
			if n, err := ob.Drain(ctx); n != 1 || err != nil {
				t.Fatalf("drain: %d %v", n, err)
			}
			got, err := os.ReadFile(filepath.Join(spool, uuid+".fjernprint.xml"))
			if err != nil || !bytes.Equal(got, fjernprint) {
				t.Fatalf("spooled fjernprint %q %v", got, err)
			}
			var meta map[string]any
			b, _ := os.ReadFile(filepath.Join(spool, uuid+".json"))
			if err := json.Unmarshal(b, &meta); err != nil || meta["fjernprint"] != uuid+".fjernprint.xml" {
				t.Fatalf("spooled json %s %v", b, err)
			}
			if strings.Contains(string(b), "ForsendelseISamling") {
				t.Errorf("the print rendition leaked into the .json: %s", b)
			}
			if key != "" {
				if _, err := w.blobs.Stat(ctx, key); hub.ErrorCode(err) != hub.NotFound {
					t.Errorf("print blob %s after the provider took the letter: %v", key, err)
				}
			}
		})
	}
}

// TestEnvelopePrintIsDroppedWhenNotPrinted: a letter delivered digitally
// keeps no print rendition anywhere.
func TestEnvelopePrintIsDroppedWhenNotPrinted(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	ctx := context.Background()
	_, uuid := w.submit(t, ctx, "0101701234", hub.ModeAutomatic, hub.Envelope{Print: []byte("<ForsendelseISamling/>")})
	ds, _ := w.store.DeliveriesOf(ctx, uuid)
	if len(ds) != 1 || ds[0].Channel != hub.ChannelMailbox || len(ds[0].Meta) != 0 {
		t.Fatalf("deliveries %+v", ds)
	}
	var keys []string
	_ = w.blobs.List(ctx, "print/", func(b hub.BlobInfo) error { keys = append(keys, b.Key); return nil })
	if len(keys) != 0 {
		t.Fatalf("print blobs %v", keys)
	}
}

// TestEnvelopePrintOfAResubmissionLeavesNoBlob: a resubmission (the same
// MeMo, so PutMessage answers Conflict and the first receipt comes back)
// writes its print rendition before it learns that; what it wrote stays
// only if the first submission's print delivery names it.
func TestEnvelopePrintOfAResubmissionLeavesNoBlob(t *testing.T) {
	print1 := []byte(`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0"><ForsendelseI/>` + strings.Repeat(" ", 500) + `</ForsendelseISamling>`)
	print2 := append(bytes.Clone(print1[:len(print1)-len("</ForsendelseISamling>")]), " <!-- again -->\n</ForsendelseISamling>"...)
	const to = "0202702345"
	printKeys := func(t *testing.T, w envelopeWorld) []string {
		t.Helper()
		var keys []string
		if err := w.blobs.List(context.Background(), "print/", func(b hub.BlobInfo) error { keys = append(keys, b.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	for _, c := range []struct {
		name    string
		again   []byte // the resubmission's print rendition
		drained bool   // the first's print delivery was handed to the provider before
		want    int    // print blobs left
	}{
		{"another rendition, first not yet printed", print2, false, 1},
		{"the same rendition, first not yet printed", print1, false, 1},
		{"the same rendition, first printed", print1, true, 0},
		{"another rendition, first printed", print2, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newEnvelopeWorld(t, 200) // the MeMo inline, the print rendition a blob
			ctx := context.Background()
			first, uuid := w.submit(t, ctx, to, hub.ModePrintOnly, hub.Envelope{Print: print1})
			ds, err := w.store.DeliveriesOf(ctx, uuid)
			if err != nil || len(ds) != 1 || ds[0].Meta[hub.MetaPrintKey] == "" {
				t.Fatalf("first submission's deliveries %+v %v", ds, err)
			}
			if c.drained {
				ob := &hub.Outbox{Store: w.store, Blobs: w.blobs, Queue: hub.PrintQueue, Holder: "t", Lease: time.Minute,
					Dispatcher: hub.SpoolDispatcher{Dir: t.TempDir()}}
				if n, err := ob.Drain(ctx); n != 1 || err != nil {
					t.Fatalf("drain: %d %v", n, err)
				}
			}
			again, _ := w.submit(t, ctx, to, hub.ModePrintOnly, hub.Envelope{Print: c.again})
			if again.TransmissionID != first.TransmissionID {
				t.Fatalf("resubmission answered %+v, want the first receipt %+v", again, first)
			}
			keys := printKeys(t, w)
			if len(keys) != c.want {
				t.Fatalf("print blobs %v, want %d", keys, c.want)
			}
			if c.want == 1 && keys[0] != ds[0].Meta[hub.MetaPrintKey] {
				t.Fatalf("print blob %s, want the first's %s", keys[0], ds[0].Meta[hub.MetaPrintKey])
			}
		})
	}
}
