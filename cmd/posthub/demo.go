package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/posthub/posthub/hub"
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
