package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/posthub/posthub/internal/atomicfile"
)

// SMTP sends e-mail through an SMTP server with net/smtp: STARTTLS when the
// server offers it (required when Username is set, as net/smtp refuses
// PLAIN auth in the clear except to localhost), then MAIL, RCPT, DATA.
type SMTP struct {
	Addr     string // host:port
	From     string // envelope and header sender
	Username string // optional PLAIN auth
	Password string
	// HelloName is sent in EHLO (default "posthub").
	HelloName string
	// RequireTLS refuses to send when the server does not offer STARTTLS
	// (it is used whenever offered).
	RequireTLS bool
	// InsecureSkipVerify is for test servers with self-signed certificates.
	InsecureSkipVerify bool
	Timeout            time.Duration
}

// SendMail implements Mailer.
func (s SMTP) SendMail(ctx context.Context, to, subject, body string) error {
	if strings.ContainsAny(to, "\r\n<>") || strings.ContainsAny(s.From, "\r\n<>") {
		return fmt.Errorf("smtp: bad address")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	hello := s.HelloName
	if hello == "" {
		hello = "posthub"
	}
	if err := c.Hello(hello); err != nil {
		return fmt.Errorf("smtp: EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok && s.RequireTLS {
		return fmt.Errorf("smtp: %s does not offer STARTTLS (required)", s.Addr)
	} else if ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, InsecureSkipVerify: s.InsecureSkipVerify, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("smtp: STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return fmt.Errorf("smtp: AUTH: %w", err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("smtp: MAIL: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if _, err := w.Write(message(s.From, to, subject, body)); err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	return c.Quit()
}

// message is an RFC 5322 message in UTF-8 (quoted-printable body, encoded
// subject) with CRLF line ends.
func message(from, to, subject, body string) []byte {
	var b bytes.Buffer
	var id [12]byte
	_, _ = rand.Read(id[:])
	domain := "posthub.invalid"
	if i := strings.LastIndex(from, "@"); i >= 0 {
		domain = from[i+1:]
	}
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", from)
	hdr("To", to)
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", time.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+domain+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `text/plain; charset="utf-8"`)
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	b.WriteString(body)
	b.WriteString("\r\n")
	return b.Bytes()
}

// SpoolSMS is the built-in SMS gateway: each SMS becomes a JSON file
// {"phone","text","queued"} in Dir, written atomically (temp file, fsync,
// rename, fsync of the directory), for a real gateway's integration to
// pick up — the pattern of hub.SpoolDispatcher.
type SpoolSMS struct{ Dir string }

// SendSMS implements SMSGateway.
func (s SpoolSMS) SendSMS(_ context.Context, phone, text string) error {
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return err
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	b, err := json.Marshal(map[string]string{"phone": phone, "text": text, "queued": time.Now().UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	name := filepath.Join(s.Dir, time.Now().UTC().Format("20060102T150405.000000000")+"-"+hex.EncodeToString(id[:])+".json")
	return atomicfile.Write(name, bytes.NewReader(b), -1, 0o600)
}
