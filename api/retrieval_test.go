package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/retrieval"
)

const retrievalOperator = "ph_retrieval-operator"

type retrievalHub struct {
	t      *testing.T
	srv    http.Handler
	store  hub.Store
	recv   hub.System // ownOrg's receiver
	tokens map[string]string
	sender hub.System
}

func newRetrievalHub(t *testing.T, withService bool) *retrievalHub {
	t.Helper()
	ctx := context.Background()
	fx := hubtest.Open(t)
	dir, store, blobs, reg := fx.Dir, fx.Store, fx.Blobs, fx.Registry
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	events := hub.StoreEvents{Store: store}
	var svc *retrieval.Service
	if withService {
		svc = retrieval.New(retrieval.Config{LeaseTTL: time.Minute, TempDir: dir}, retrieval.Deps{Store: store, Blobs: blobs, Events: events})
		t.Cleanup(svc.Wait) // a system-fetch move may outlive the test's requests; before the stores close
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := api.New(api.Config{OperatorTokenHash: hub.HashToken(retrievalOperator), SpoolDir: dir}, api.Deps{
		Store: store, Blobs: blobs, Registry: reg, Enforcer: en, Log: log, Retrieval: svc,
		Ingest: fx.Ingest(events, 0)})
	h := &retrievalHub{t: t, srv: srv.Handler(), store: store, tokens: map[string]string{}}
	fx.Authorities(hub.SetupSystemRetrieval, ownOrg, otherOrg)
	for _, s := range []struct {
		name, org string
		role      hub.SystemRole
	}{{"recv", ownOrg, hub.RecipientSystem}, {"other-recv", otherOrg, hub.RecipientSystem}, {"sender", otherOrg, hub.SenderSystem}} {
		sys, tok := fx.System(s.org, hub.SystemSpec{Name: s.name, Role: s.role})
		h.tokens[s.name] = tok
		switch s.name {
		case "recv":
			h.recv = sys
		case "sender":
			h.sender = sys
		}
	}
	return h
}

// put stores a message for ownOrg's receiver and returns its UUID and bytes.
func (h *retrievalHub) put(id string) []byte {
	h.t.Helper()
	body := []byte(`<?xml version="1.0"?><memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1">` + id + `</memo:Message>`)
	sum := sha256.Sum256(body)
	now := time.Now().UTC()
	q := hub.SystemQueue(h.recv.ID)
	m := hub.Message{UUID: id, SenderCVR: otherOrg, SenderSystemID: h.sender.ID, RecipientID: ownOrg, RecipientType: "CVR",
		MemoVersion: "1.1", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body)), Content: body, Received: now, State: hub.MessageActive}
	d := hub.Delivery{ID: hub.DeliveryID(id, q), MessageUUID: id, Channel: hub.ChannelSystem, Queue: q, OrgCVR: ownOrg, SystemID: h.recv.ID,
		Created: now, AvailableAt: now, State: hub.DeliveryReady, Size: m.Size}
	if err := h.store.PutMessage(context.Background(), m, []hub.Delivery{d},
		hub.Receipt{TransmissionID: "t-" + id, SystemID: h.sender.ID, MessageUUID: id, Time: now, Status: hub.ReceiptReceived}); err != nil {
		h.t.Fatal(err)
	}
	return body
}

func (h *retrievalHub) do(method, path, token, body string, hdr ...string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.Header.Set("Authorization", "Basic "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	return rec
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int, what string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("%s: %d, want %d: %s", what, rec.Code, status, rec.Body)
	}
}

func fieldCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e api.ErrorMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e.FieldErrors) == 0 {
		return ""
	}
	return e.FieldErrors[0].Code
}

func TestRetrievalHTTPFetchLeaseAckAndTenancy(t *testing.T) {
	h := newRetrievalHub(t, true)
	const id = "7b0b4c8e-6a9e-4b7a-9d7e-000000000001"
	body := h.put(id)
	recv, other, sender := h.tokens["recv"], h.tokens["other-recv"], h.tokens["sender"]

	rec := h.do("GET", "/apis/v1/memos/?page=0&size=10", recv, "")
	wantStatus(t, rec, 200, "list")
	var page paging.Result[string]
	_ = json.Unmarshal(rec.Body.Bytes(), &page)
	if len(page.Content) != 1 || page.Content[0] != id || page.Total() != 1 || *page.TotalPages != 1 || page.Size != 10 {
		t.Fatalf("list %+v", page)
	}
	wantStatus(t, h.do("GET", "/apis/v1/memos/"+id, sender, ""), 403, "fetch by a sender system")
	wantStatus(t, h.do("GET", "/apis/v1/memos/"+id, other, ""), 404, "fetch by another organisation's receiver")

	rec = h.do("GET", "/apis/v1/memos/"+id, recv, "")
	wantStatus(t, rec, 200, "fetch")
	if !bytes.Equal(rec.Body.Bytes(), body) || rec.Header().Get("Content-Type") != "application/xml" {
		t.Fatalf("fetched body/content type differ: %q", rec.Header().Get("Content-Type"))
	}
	lease := rec.Header().Get(api.HeaderLease)
	if !strings.HasPrefix(lease, hub.DeliveryID(id, hub.SystemQueue(h.recv.ID))+"#") || rec.Header().Get(api.HeaderAttempt) != "1" ||
		rec.Header().Get(api.HeaderLeaseExpires) == "" || rec.Header().Get(api.HeaderMessageUUID) != id {
		t.Fatalf("lease headers %v", rec.Header())
	}
	rec = h.do("GET", "/apis/v1/memos/"+id, recv, "")
	wantStatus(t, rec, 409, "second poller while the lease lives")
	if fieldCode(t, rec) != "memo.leased" {
		t.Fatalf("field code %q", fieldCode(t, rec))
	}
	wantStatus(t, h.do("GET", "/apis/v1/memos/next?wait=20ms", recv, ""), 204, "next with the only message leased")
	wantStatus(t, h.do("GET", "/apis/v1/memos/next?wait=soon", recv, ""), 400, "next with a bad wait")

	wantStatus(t, h.do("DELETE", "/apis/v1/memos/"+id, other, ""), 404, "ack by another organisation's receiver")
	wantStatus(t, h.do("DELETE", "/apis/v1/memos/"+id, sender, ""), 403, "ack by a sender system")
	wantStatus(t, h.do("DELETE", "/apis/v1/memos/"+id, recv, ""), 204, "ack")
	wantStatus(t, h.do("DELETE", "/apis/v1/memos/"+id, recv, ""), 204, "double ack")
	wantStatus(t, h.do("DELETE", "/apis/v1/memos/"+id, other, ""), 404, "ack of an acknowledged message by another organisation")
	wantStatus(t, h.do("GET", "/apis/v1/memos/"+id, recv, ""), 404, "fetch after ack")
	wantStatus(t, h.do("DELETE", "/apis/v1/memos/00000000-0000-4000-8000-000000000000", recv, ""), 404, "ack of an unknown message")
	r, err := h.store.ReceiptFor(context.Background(), h.sender.ID, id)
	if err != nil || r.Status != hub.ReceiptCompleted {
		t.Fatalf("sender receipt %+v, %v", r, err)
	}
}

func TestRetrievalHTTPInvalidReceiptParksAndAdminUnparks(t *testing.T) {
	h := newRetrievalHub(t, true)
	const id = "7b0b4c8e-6a9e-4b7a-9d7e-000000000002"
	h.put(id)
	recv := h.tokens["recv"]
	rec := h.do("GET", "/apis/v1/memos/next?wait=1s", recv, "")
	wantStatus(t, rec, 200, "next")
	if rec.Header().Get(api.HeaderMessageUUID) != id {
		t.Fatalf("next gave %q", rec.Header().Get(api.HeaderMessageUUID))
	}
	rec = h.do("POST", "/apis/v1/memos/"+id+"/receipt", recv, `{"receiptStatus":"RECEIVED"}`)
	wantStatus(t, rec, 400, "receipt with status RECEIVED")
	wantStatus(t, h.do("POST", "/apis/v1/memos/"+id+"/receipt", recv, `{"receiptStatus":"INVALID","errorCode":"x"}`,
		api.HeaderLease, rec.Header().Get(api.HeaderLease)), 204, "INVALID receipt")
	rec = h.do("GET", "/apis/v1/memos/"+id, recv, "")
	wantStatus(t, rec, 409, "fetch of a parked message")
	documented(t, "GET", "/apis/v1/memos/:id", 409)
	if fieldCode(t, rec) != "memo.parked" {
		t.Fatalf("field code %q", fieldCode(t, rec))
	}
	rec = h.do("GET", "/apis/v1/organisations/"+ownOrg+"/parked-memos/", retrievalOperator, "")
	wantStatus(t, rec, 200, "parked list")
	var pp paging.Result[hub.Delivery]
	_ = json.Unmarshal(rec.Body.Bytes(), &pp)
	if parked := pp.Content; len(parked) != 1 || pp.Total() != 1 || parked[0].MessageUUID != id || parked[0].Meta["parkedReason"] == "" {
		t.Fatalf("parked %+v", pp)
	}
	wantStatus(t, h.do("GET", "/apis/v1/organisations/"+ownOrg+"/parked-memos/", recv, ""), 403, "parked list by a receiver system")
	wantStatus(t, h.do("POST", "/apis/v1/organisations/"+otherOrg+"/parked-memos/"+id+"/unpark", retrievalOperator, ""), 404, "unpark in another organisation")
	wantStatus(t, h.do("POST", "/apis/v1/organisations/"+ownOrg+"/parked-memos/"+id+"/unpark", retrievalOperator, ""), 200, "unpark")
	wantStatus(t, h.do("POST", "/apis/v1/memos/"+id+"/receipt", recv, `{"receiptStatus":"COMPLETED"}`), 204, "COMPLETED receipt")
	wantStatus(t, h.do("GET", "/apis/v1/memos/"+id, recv, ""), 404, "fetch after COMPLETED")
	rec = h.do("GET", "/apis/v1/organisations/"+ownOrg+"/inactive-systems/", retrievalOperator, "")
	wantStatus(t, rec, 200, "inactive list")
}

func TestRetrievalHTTPSystemFetchRoutes(t *testing.T) {
	h := newRetrievalHub(t, true)
	recv := h.tokens["recv"]
	mb := "/apis/v1/mailboxes/" + ownOrg + ":AUTHORITY_POST/system-fetches/"
	wantStatus(t, h.do("POST", "/apis/v1/mailboxes/"+otherOrg+":AUTHORITY_POST/system-fetches/", recv, `{}`), 404, "another organisation's mailbox")
	rec := h.do("POST", mb, recv, `{}`)
	wantStatus(t, rec, 201, "start")
	var j retrieval.SystemFetch
	_ = json.Unmarshal(rec.Body.Bytes(), &j)
	if j.ID == "" || j.MailboxID != ownOrg+":AUTHORITY_POST" || j.SystemID != h.recv.ID {
		t.Fatalf("job %+v", j)
	}
	wantStatus(t, h.do("GET", mb, recv, ""), 200, "list")
	wantStatus(t, h.do("GET", mb+j.ID, recv, ""), 200, "get")
	wantStatus(t, h.do("GET", mb+j.ID, h.tokens["other-recv"], ""), 404, "get by another organisation")
	wantStatus(t, h.do("PUT", mb+j.ID, recv, `{"systemFetchStatusType":"RUNNING"}`), 400, "PUT other than STOPPED")
	rec = h.do("PUT", mb+j.ID, recv, `{"systemFetchStatusType":"STOPPED"}`)
	wantStatus(t, rec, 200, "stop")
}

func TestRetrievalRoutesAnswer503WithoutTheService(t *testing.T) {
	h := newRetrievalHub(t, false)
	wantStatus(t, h.do("GET", "/apis/v1/memos/", h.tokens["recv"], ""), 503, "list without retrieval")
}
