// Command sendbench is the load generator behind `make bench`'s send rows:
// it submits MeMos to a running hub over HTTP with N concurrent senders and
// prints one JSON line with the accepted rate and latency percentiles.
//
// The template MeMo (default: the official MeMo_Full_Example) is adjusted
// once (sender, recipient, no hold date) and every request gets a fresh
// messageUUID, so each submission is a new letter.
//
// With -kombi the same MeMo goes through the SF1601 door instead: wrapped
// in a kombi_request (KombiValgKode "Automatisk Valg", the NgDP route's
// default mode) and posted to /service/KombiPostAfsend_1/memos with a
// Bearer token and an X-TransaktionsId, so the two doors can be compared
// letter for letter.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthub/posthub/memo"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "hub base URL")
	token := flag.String("token", "", "sender system token")
	tmpl := flag.String("memo", "memo/testdata/samples/v1.1/MeMo_Full_Example.xml", "template MeMo")
	from := flag.String("from", "11111111", "sender CVR to put in the template")
	to := flag.String("to", "0101701234", "recipient CPR/CVR to put in the template")
	conc := flag.Int("c", 16, "concurrent senders")
	dur := flag.Duration("d", 10*time.Second, "duration")
	count := flag.Int("n", 0, "stop after this many (0: run for -d)")
	rate := flag.Float64("rate", 0, "target requests per second in total (0: as fast as possible)")
	raw := flag.Bool("raw", false, "send the template file as it is, once (large-message timing)")
	kombi := flag.Bool("kombi", false, "send through SF1601's KombiPostAfsend, each MeMo in a kombi_request")
	flag.Parse()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc * 2}, Timeout: 10 * time.Minute}
	if *raw {
		os.Exit(sendRaw(client, *url, *token, *tmpl))
	}
	body, oldUUID := template(*tmpl, *from, *to)
	if *kombi {
		body = kombiRequest(body)
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		ok, bad   atomic.Int64
		issued    atomic.Int64
		firstErr  atomic.Value
	)
	deadline := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(*conc) / *rate)
	}
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			next := time.Now().Add(time.Duration(w) * interval / time.Duration(*conc))
			var local []time.Duration
			// Each sender writes its next UUID into its own copy of the
			// template: no per-request copy of the body, so the generator
			// takes as little as it can of the CPU it shares with the hub.
			b := bytes.Clone(body)
			at := bytes.Index(b, []byte(oldUUID))
			for {
				n := issued.Add(1)
				if (*count > 0 && n > int64(*count)) || (*count == 0 && time.Now().After(deadline)) {
					break
				}
				if interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				u := memo.NewUUID()
				copy(b[at:], u) // the previous request's body has been read: its response is in
				var req *http.Request
				if *kombi {
					req, _ = http.NewRequest("POST", *url+"/service/KombiPostAfsend_1/memos", bytes.NewReader(b))
					req.Header.Set("Authorization", "Bearer "+*token)
					req.Header.Set("X-TransaktionsId", memo.NewUUID())
				} else {
					req, _ = http.NewRequest("POST", *url+"/apis/v1/memos/?memo-message-uuid="+u, bytes.NewReader(b))
					req.Header.Set("Authorization", "Basic "+*token)
				}
				req.Header.Set("Content-Type", "application/xml")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				rb, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				local = append(local, time.Since(t0))
				if resp.StatusCode == 201 {
					ok.Add(1)
				} else {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %s", resp.StatusCode, rb))
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	out := map[string]any{"accepted": ok.Load(), "failed": bad.Load(), "seconds": elapsed.Seconds(),
		"perSecond": float64(ok.Load()) / elapsed.Seconds(), "p50ms": pct(0.50), "p99ms": pct(0.99), "bytes": len(body)}
	if e := firstErr.Load(); e != nil {
		out["firstError"] = e
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if ok.Load() == 0 {
		os.Exit(1)
	}
}

// kombiRequest wraps a MeMo in a kombi_request, its bytes unchanged.
func kombiRequest(memoXML []byte) []byte {
	if bytes.HasPrefix(memoXML, []byte("<?xml")) {
		if i := bytes.Index(memoXML, []byte("?>")); i >= 0 {
			memoXML = bytes.TrimLeft(memoXML[i+2:], "\r\n")
		}
	}
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\"?>\n<kombi_request><KombiValgKode>Automatisk Valg</KombiValgKode>")
	b.Write(memoXML)
	b.WriteString("</kombi_request>\n")
	return b.Bytes()
}

// template makes the template a deliverable letter and returns it with
// the UUID to replace per request.
func template(path, from, to string) ([]byte, string) {
	m, err := memo.ParseFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(2)
	}
	h := &m.MessageHeader
	h.MessageUUID = memo.NewUUID()
	h.DoNotDeliverUntilDate = ""
	h.Sender.SenderID, h.Sender.IDType = from, memo.IDTypeCVR
	h.Recipient.RecipientID = to
	h.Recipient.IDType = memo.IDTypeCPR
	if len(to) == 8 {
		h.Recipient.IDType = memo.IDTypeCVR
	}
	h.Recipient.ContactPoint = nil
	h.ForwardData = nil
	h.ReplyData = nil
	if h.ContentData != nil {
		h.ContentData.CPRdata, h.ContentData.CVRdata = nil, nil
	}
	if m.MessageBody != nil {
		for _, d := range m.Documents() {
			for i := range d.Document.Actions {
				if ep := d.Document.Actions[i].EntryPoint; ep != nil {
					ep.URL = strings.Replace(ep.URL, "http://", "https://", 1)
				}
			}
		}
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(2)
	}
	b := buf.Bytes()
	if !bytes.Contains(b, []byte(h.MessageUUID)) {
		fmt.Fprintln(os.Stderr, "template: uuid not found after writing")
		os.Exit(2)
	}
	return b, h.MessageUUID
}

func sendRaw(client *http.Client, url, token, path string) int {
	m, err := memo.ParseFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer f.Close()
	st, _ := f.Stat()
	req, _ := http.NewRequest("POST", url+"/apis/v1/memos/?memo-message-uuid="+strings.ToLower(m.MessageHeader.MessageUUID), f)
	req.ContentLength = st.Size()
	req.Header.Set("Authorization", "Basic "+token)
	req.Header.Set("Content-Type", "application/xml")
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := map[string]any{"status": resp.StatusCode, "seconds": time.Since(t0).Seconds(), "bytes": st.Size()}
	if resp.StatusCode != 201 {
		out["body"] = string(rb)
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if resp.StatusCode != 201 {
		return 1
	}
	return 0
}
