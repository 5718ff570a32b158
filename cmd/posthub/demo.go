package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/atomicfile"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/viewer/web"
)

// Demo parties. The numbers are made up (CPR numbers of the 1st–3rd of
// January 1970 style); they exist only in a demo hub.
const (
	demoAuthority = "11111111"
	demoCompany   = "22222222"
	demoCitizen   = "0101701234"
	demoExempt    = "0202702345"
	demoSMS       = "0303703456"
)

type demoSystem struct {
	org  string
	spec hub.SystemSpec
}

var demoSystems = []demoSystem{
	{demoAuthority, hub.SystemSpec{Name: "Demo sagssystem (sender)", Role: hub.SenderSystem}},
	{demoAuthority, hub.SystemSpec{Name: "Demo ESDH (default receiver)", Role: hub.RecipientSystem, Mailbox: hub.AuthorityPost, Default: true, MemoVersion: "1.2"}},
	{demoAuthority, hub.SystemSpec{Name: "Demo byggesag (receiver)", Role: hub.RecipientSystem, Mailbox: hub.AuthorityPost}},
	{demoAuthority, hub.SystemSpec{Name: "Demo CVR-post (receiver)", Role: hub.RecipientSystem, Mailbox: hub.CVRPost}},
	{demoCompany, hub.SystemSpec{Name: "Demo ApS ERP (receiver)", Role: hub.RecipientSystem}},
	{demoCompany, hub.SystemSpec{Name: "Demo ApS fakturering (sender)", Role: hub.SenderSystem}},
}

// seedDemo creates the demo organisations, systems, contact structure and
// contact register on first start, and on every start issues fresh tokens
// for the demo systems (tokens are stored hashed and cannot be shown again)
// and prints them.
func seedDemo(ctx context.Context, store hub.Store, reg *hub.Registry, imp *hub.ContactImporter, out io.Writer, base, operatorToken string) error {
	for _, o := range []hub.Organisation{
		{CVR: demoAuthority, Name: "Demo Kommune", Kind: hub.Authority, Setup: hub.SetupContactable},
		{CVR: demoCompany, Name: "Demo ApS", Kind: hub.Company, Setup: hub.SetupSystemRetrieval},
	} {
		if _, err := reg.CreateOrg(ctx, o); err != nil && hub.ErrorCode(err) != hub.Conflict {
			return err
		}
	}
	type issued struct {
		sys   hub.System
		token string
	}
	var tokens []issued
	for _, ds := range demoSystems {
		existing, err := store.ListSystems(ctx, ds.org)
		if err != nil {
			return err
		}
		var found *hub.System
		for i := range existing {
			if existing[i].Name == ds.spec.Name {
				found = &existing[i]
			}
		}
		if found == nil {
			s, tok, err := reg.RegisterSystem(ctx, ds.org, ds.spec)
			if err != nil {
				return err
			}
			tokens = append(tokens, issued{s, tok})
			continue
		}
		s, tok, err := reg.RotateToken(ctx, ds.org, found.ID)
		if err != nil {
			return err
		}
		tokens = append(tokens, issued{s, tok})
	}
	points, err := store.ListContactPoints(ctx, demoAuthority)
	if err != nil {
		return err
	}
	if len(points) == 0 {
		if _, err := reg.PutContactPoint(ctx, hub.ContactPoint{OrgCVR: demoAuthority, Name: "Byggesager", SystemID: tokens[2].sys.ID,
			Codes: []hub.ContactPointCode{{Type: hub.CodeKLE, Code: "02.00"}}, Active: true, Visible: true}); err != nil {
			return err
		}
	}
	if err := store.PutContacts(ctx, []hub.Contact{
		{ID: demoCitizen, Status: hub.Registered, Email: "borger@example.org", Name: "Demo Borger"},
		{ID: demoExempt, Status: hub.Exempt, Name: "Fritaget Borger", Address: []string{"Fritaget Borger", "Eksempelvej 1", "1234 Demoby"}},
		{ID: demoSMS, Status: hub.Registered, NemSMS: true, Phone: "+4512345678", Name: "SMS Borger"},
	}); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nposthub demo hub at %s\n\n", base)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORGANISATION\tSYSTEM\tROLE\tAPI TOKEN")
	for _, t := range tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.sys.OrgCVR, t.sys.Name, t.sys.Role, t.token)
	}
	fmt.Fprintf(tw, "-\thub operator\tOPERATOR\t%s\n", operatorToken)
	tw.Flush()
	fmt.Fprintf(out, `
Citizens: %s (digital post), %s (exempt: printed), %s (NemSMS).
Try:
  ./bin/posthub memo new --from %s --to %s -o /tmp/letter.xml
  ./bin/posthub send --url %s --token %s /tmp/letter.xml
  curl -H 'Authorization: Basic %s' %s/apis/v1/receipts/
  curl %s/apis/v1/openapi.json

`, demoCitizen, demoExempt, demoSMS, demoAuthority, demoCitizen, base, tokens[0].token, tokens[0].token, base, base)
	return nil
}

// The demo viewing client: the identity the reference web mailbox
// (viewer/web) acts with. It lives in an organisation of its own, like a
// national viewing client (borger.dk, e-Boks, mit.dk) that is none of the
// senders or recipients.
const (
	demoViewerOrg     = "12121212"
	demoViewerName    = "Demo webpostkasse (viewing client)"
	demoViewerKeyID   = "demo-web-mailbox"
	demoViewerKeyFile = "demo-viewer-ed25519.pem"
)

// demoViewer is the demo viewing client's system and assertion key.
type demoViewer struct {
	SystemID string
	Token    string
	KeyID    string
	Key      ed25519.PrivateKey
	KeyFile  string
}

// seedDemoViewer registers this instance's demo viewing-client system (on
// every start with a fresh token, as seedDemo does), loads or generates its
// Ed25519 assertion key in the data directory (PKCS#8 PEM, usable by any
// JWT library) and registers the public key under demoViewerKeyID,
// replacing a registration of another key under that ID.
//
// Each data directory is a viewing client of its own, named after its key:
// instances sharing one store each rotate and register only their own, so
// the web mailbox works on all of them (with one shared system, each start
// revoked the token of every instance started before it, whose web mailbox
// then answered 401 to everyone).
func seedDemoViewer(ctx context.Context, store hub.Store, mb hub.MailboxStore, reg *hub.Registry, data string) (demoViewer, error) {
	if _, err := reg.CreateOrg(ctx, hub.Organisation{CVR: demoViewerOrg, Name: "Demo Visningsklient", Kind: hub.Authority,
		Setup: hub.SetupMailboxOnly}); err != nil && hub.ErrorCode(err) != hub.Conflict {
		return demoViewer{}, err
	}
	path := filepath.Join(data, demoViewerKeyFile)
	key, err := loadOrCreatePKCS8Key(path)
	if err != nil {
		return demoViewer{}, fmt.Errorf("demo viewer key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return demoViewer{}, err
	}
	sum := sha256.Sum256(der)
	name := demoViewerName + " " + hex.EncodeToString(sum[:4])
	systems, err := store.ListSystems(ctx, demoViewerOrg)
	if err != nil {
		return demoViewer{}, err
	}
	var sys hub.System
	var token string
	for _, s := range systems {
		if s.Name == name && s.Role == hub.ViewerSystem {
			sys, token, err = reg.RotateToken(ctx, demoViewerOrg, s.ID)
			if err != nil {
				return demoViewer{}, err
			}
		}
	}
	if sys.ID == "" {
		if sys, token, err = reg.RegisterSystem(ctx, demoViewerOrg, hub.SystemSpec{Name: name, Role: hub.ViewerSystem}); err != nil {
			return demoViewer{}, err
		}
	}
	keys, err := mb.AssertionKeys(ctx, sys.ID)
	if err != nil {
		return demoViewer{}, err
	}
	registered := false
	for _, k := range keys {
		if k.KeyID != demoViewerKeyID {
			continue
		}
		if bytes.Equal(k.PublicKey, der) && k.Alg == "EdDSA" {
			registered = true
		} else if err := mb.DeleteAssertionKey(ctx, sys.ID, k.KeyID); err != nil {
			return demoViewer{}, err
		}
	}
	if !registered {
		err := mb.PutAssertionKey(ctx, hub.AssertionKey{SystemID: sys.ID, KeyID: demoViewerKeyID, Alg: "EdDSA", PublicKey: der,
			Created: time.Now().UTC()})
		if err != nil && hub.ErrorCode(err) != hub.Conflict { // Conflict: another instance registered it
			return demoViewer{}, err
		}
	}
	return demoViewer{SystemID: sys.ID, Token: token, KeyID: demoViewerKeyID, Key: key, KeyFile: path}, nil
}

// loadOrCreatePKCS8Key reads an Ed25519 private key (PEM "PRIVATE KEY",
// PKCS#8) or creates one, readable by the owner only.
func loadOrCreatePKCS8Key(path string) (ed25519.PrivateKey, error) {
	return atomicfile.LoadOrCreate(path, 0o600, func() ([]byte, error) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}, func(b []byte) (ed25519.PrivateKey, error) {
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PRIVATE KEY" {
			return nil, errors.New("not a PEM PRIVATE KEY")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, errors.New("not an Ed25519 key")
		}
		return ek, nil
	})
}

// demoPeople are the web mailbox's login choices.
var demoPeople = []web.DemoPerson{
	{Label: "Demo Borger, CPR " + demoCitizen + " (digital post, e-mail notifications)", CPR: demoCitizen},
	{Label: "SMS Borger, CPR " + demoSMS + " (NemSMS)", CPR: demoSMS},
	{Label: "Fritaget Borger, CPR " + demoExempt + " (exempt: letters go by print)", CPR: demoExempt},
	{Label: "Erik Medarbejder (employee), message employee of Demo ApS, CVR " + demoCompany, UserID: "employee", CVR: demoCompany},
	{Label: "Camilla ApS (company-admin), administrator of Demo ApS without the message-employee privilege", UserID: "company-admin", CVR: demoCompany},
}

// printDemoViewer adds the viewing client to the demo banner. Its API
// token, which with the assertion key reads any mailbox, is printed for a
// demo only: a hub serving the web mailbox for real keeps it out of its
// output (and so out of the logs that collect it).
func printDemoViewer(out io.Writer, base string, v demoViewer, web, demo bool) {
	token := "(not shown outside -demo; the web mailbox holds it)"
	if demo {
		token = v.Token
	}
	fmt.Fprintf(out, `
Viewing client (organisation %s): system %s
  API token      %s
  assertion key  kid %q, Ed25519 private key in %s (sign X-User-Assertion JWTs with it)
`, demoViewerOrg, v.SystemID, token, v.KeyID, v.KeyFile)
	if web {
		fmt.Fprintf(out, "  web mailbox    %s/mailbox/ (demo login: any demo citizen or company user)\n", base)
	}
	fmt.Fprintln(out)
}

// demoUsers are the demo hub's people: one per privilege of Demo Kommune,
// a hub operator, and Demo ApS's administrator and message employee (who
// reads the company's post in the web mailbox).
var demoUsers = []struct{ id, name, role, org string }{
	{"operator", "Hub Operatør", rbac.HubOperator, rbac.Global},
	{"admin", "Anne Admin", rbac.OrgAdmin, demoAuthority},
	{"systems", "Søren Systemansvarlig", rbac.SystemManager, demoAuthority},
	{"stats", "Stine Statistik", rbac.StatisticsAdm, demoAuthority},
	{"recall", "Rasmus Tilbagekald", rbac.RecallAdmin, demoAuthority},
	{"company-admin", "Camilla ApS", rbac.OrgAdmin, demoCompany},
	{"employee", "Erik Medarbejder", rbac.MessageEmploye, demoCompany},
}

// seedDemoUsers (re)creates the demo users with fresh passwords, grants
// their privileges and prints the logins.
func seedDemoUsers(ctx context.Context, store hub.Store, en *rbac.Enforcer, w io.Writer, base string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nAdmin portal: %s/admin/\nUSER\tPRIVILEGE\tSCOPE\tPASSWORD\n", base)
	for _, d := range demoUsers {
		pw := randomPassword()
		if err := createUser(ctx, store, d.id, d.name, pw); err != nil {
			return err
		}
		if err := en.Grant(ctx, rbac.Grant{User: d.id, Role: d.role, Domain: d.org}); err != nil && hub.ErrorCode(err) != hub.Conflict {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.id, d.role, d.org, pw)
	}
	return tw.Flush()
}
