package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "posthub test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

// certWorld is a data directory holding the test world whose sender system
// is bound to a client certificate of the test CA, and what an HTTPS hub
// on it needs.
type certWorld struct {
	ca      *testCA
	data    string
	tlsArgs []string // -tls-cert, -tls-key, -client-ca
	world   world
	client  tls.Certificate // the sender system's certificate
	sender  hub.System      // the sender system, bound to client
}

// newCertWorld registers the world through a plain-HTTP hub, binds the
// sender system to a certificate issued for cn and stops that hub.
func newCertWorld(t *testing.T, cn string) certWorld {
	cw := certWorld{ca: newTestCA(t), data: t.TempDir()}
	dir := t.TempDir()
	_, srvCert, srvKey := cw.ca.issue(t, "127.0.0.1", true)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cw.tlsArgs = []string{"-tls-cert", write("srv.pem", srvCert), "-tls-key", write("srv.key", srvKey), "-client-ca", write("ca.pem", cw.ca.pem)}
	h := startHubIn(t, cw.data, "http")
	cw.world = h.setupWorld()
	cw.client, _, _ = cw.ca.issue(t, cn, false)
	store := h.openStore()
	ctx := context.Background()
	sys, err := store.SystemByToken(ctx, hub.HashToken(cw.world.sender))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cw.client.Certificate[0])
	sys.CertFingerprint = hex.EncodeToString(sum[:])
	if err := store.UpdateSystem(ctx, sys); err != nil {
		t.Fatal(err)
	}
	store.Close()
	cw.sender = sys
	return cw
}

// clientWith is an HTTPS client trusting the test CA, presenting certs.
func (cw certWorld) clientWith(certs ...tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cw.ca.pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
}

// TestTLSAndClientCertificates serves HTTPS, and a system whose client
// certificate is registered must present exactly that certificate on top
// of its token.
func TestTLSAndClientCertificates(t *testing.T) {
	cw := newCertWorld(t, "sender")
	ca, data, tlsArgs, w, clientPair, clientWith := cw.ca, cw.data, cw.tlsArgs, cw.world, cw.client, cw.clientWith
	otherPair, _, _ := ca.issue(t, "someone else", false)
	h2 := startHubIn(t, data, "https", tlsArgs...)
	uuid, body := letterXML(t, memo.Letter{To: citizen})

	h2.client = clientWith()
	h2.mustStatus(h2.do("GET", "/healthz", "", "", nil), 200)
	r := h2.send(w.sender, uuid, body, "")
	if r.status != 401 {
		t.Fatalf("without its certificate: %d %s", r.status, r.body)
	}
	h2.client = clientWith(otherPair)
	if r := h2.send(w.sender, uuid, body, ""); r.status != 401 {
		t.Fatalf("with another certificate: %d %s", r.status, r.body)
	}
	h2.client = clientWith(clientPair)
	h2.mustStatus(h2.send(w.sender, uuid, body, ""), 201)
	// A system without a registered certificate still uses its token alone.
	h2.client = clientWith()
	h2.mustStatus(h2.do("GET", "/apis/v1/receipts/", w.senderB, "", nil), 200)
	// Plain HTTP is not served on the TLS port.
	plain := &testHub{t: t, base: "http" + h2.base[len("https"):]}
	req, _ := http.NewRequest("GET", plain.base+"/healthz", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered on the TLS listener")
		}
	}
}
