package hub

import (
	"context"
	"testing"
)

// fakeRegistryStore keeps organisations and systems in memory.
type fakeRegistryStore struct {
	Store
	orgs    map[string]Organisation
	systems []System
}

func (f *fakeRegistryStore) GetOrg(_ context.Context, cvr string) (Organisation, error) {
	if o, ok := f.orgs[cvr]; ok {
		return o, nil
	}
	return Organisation{}, Errorf(NotFound, "no org")
}

func (f *fakeRegistryStore) CreateOrg(_ context.Context, o Organisation) error {
	if _, ok := f.orgs[o.CVR]; ok {
		return Errorf(Conflict, "exists")
	}
	f.orgs[o.CVR] = o
	return nil
}

func (f *fakeRegistryStore) ListSystems(_ context.Context, org string) ([]System, error) {
	var out []System
	for _, s := range f.systems {
		if s.OrgCVR == org {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeRegistryStore) CreateSystem(_ context.Context, s System) error {
	f.systems = append(f.systems, s)
	return nil
}

// ChangeReceivers decides and writes at once: the fake is used by one
// goroutine.
func (f *fakeRegistryStore) ChangeReceivers(_ context.Context, org string, ch ReceiverChange) error {
	if err := CheckReceiverChange(org, ch); err != nil {
		return err
	}
	var active []Receiver
	for _, s := range f.systems {
		if s.OrgCVR == org && s.Role == RecipientSystem && s.Active {
			active = append(active, Receiver{ID: s.ID, Mailbox: s.Mailbox, Default: s.Default})
		}
	}
	next, err := ch.Rule(active)
	if err != nil {
		return err
	}
	plan, err := PlanReceivers(active, next, ch.Add)
	if err != nil {
		return err
	}
	for i, s := range f.systems {
		if st, ok := plan[s.ID]; ok {
			f.systems[i].Active, f.systems[i].Default, f.systems[i].Version = st.Active, st.Default, s.Version+1
		}
	}
	if ch.Add != nil {
		ch.Add.Active, ch.Add.Default = true, plan[ch.Add.ID].Default
		f.systems = append(f.systems, *ch.Add)
	}
	return nil
}

func (f *fakeRegistryStore) GetSystem(_ context.Context, id string) (System, error) {
	for _, s := range f.systems {
		if s.ID == id {
			return s, nil
		}
	}
	return System{}, Errorf(NotFound, "no system")
}

func (f *fakeRegistryStore) UpdateSystem(_ context.Context, s System) error {
	for i := range f.systems {
		if f.systems[i].ID == s.ID {
			if f.systems[i].Version != s.Version {
				return Errorf(Conflict, "version")
			}
			s.Version++
			f.systems[i] = s
			return nil
		}
	}
	return Errorf(NotFound, "no system")
}

func (f *fakeRegistryStore) SystemByToken(_ context.Context, h string) (System, error) {
	for _, s := range f.systems {
		if s.TokenHash == h {
			return s, nil
		}
	}
	return System{}, Errorf(NotFound, "no system")
}

func fieldCodeOf(err error) string {
	if he, ok := err.(*Error); ok && len(he.Fields) > 0 {
		return he.Fields[0].Code
	}
	return string(ErrorCode(err))
}

func TestRegistryEnforcesTheFiveSystemRule(t *testing.T) {
	ctx := context.Background()
	st := &fakeRegistryStore{orgs: map[string]Organisation{}}
	g := &Registry{Store: st}
	if _, err := g.CreateOrg(ctx, Organisation{CVR: "11111111", Name: "A", Kind: Authority, Setup: SetupContactable}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.CreateOrg(ctx, Organisation{CVR: "22222222", Name: "C", Kind: Company, Setup: SetupSystemRetrieval}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.CreateOrg(ctx, Organisation{CVR: "44444444", Name: "M", Kind: Authority, Setup: SetupMailboxOnly}); err != nil {
		t.Fatal(err)
	}
	recv := func(org string, mb MailboxKind, def bool) (System, error) {
		s, _, err := g.RegisterSystem(ctx, org, SystemSpec{Name: "r", Role: RecipientSystem, Mailbox: mb, Default: def})
		return s, err
	}
	if _, err := recv("44444444", AuthorityPost, false); fieldCodeOf(err) != "organisation.setup.mailbox.only" || ErrorCode(err) != Conflict {
		t.Errorf("receiver of a MAILBOX_ONLY organisation: %v", err)
	}
	if _, _, err := g.RegisterSystem(ctx, "44444444", SystemSpec{Name: "s", Role: SenderSystem}); err != nil {
		t.Errorf("sender of a MAILBOX_ONLY organisation: %v", err)
	}
	first, err := recv("11111111", AuthorityPost, false)
	if err != nil || !first.Default {
		t.Fatalf("first authority-post system must become the default: %+v %v", first, err)
	}
	if _, err := recv("11111111", AuthorityPost, true); fieldCodeOf(err) != "system.default.exists" {
		t.Errorf("second default: %v", err)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		s, err := recv("11111111", AuthorityPost, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	if _, err := recv("11111111", AuthorityPost, false); fieldCodeOf(err) != "system.limit.authority.post" || ErrorCode(err) != Conflict {
		t.Errorf("fifth authority-post system: %v", err)
	}
	if _, err := recv("11111111", CVRPost, false); err != nil {
		t.Fatal(err)
	}
	if _, err := recv("11111111", CVRPost, false); fieldCodeOf(err) != "system.limit.cvr.post" {
		t.Errorf("second CVR-post system: %v", err)
	}
	if _, err := recv("22222222", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := recv("22222222", "", false); fieldCodeOf(err) != "system.limit.company" {
		t.Errorf("second company system: %v", err)
	}
	// Deactivating a system frees its place.
	if _, err := g.DeactivateSystem(ctx, "11111111", ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := recv("11111111", AuthorityPost, false); err != nil {
		t.Errorf("after deactivation: %v", err)
	}
	// The default cannot be deactivated while others exist; moving it works.
	if _, err := g.DeactivateSystem(ctx, "11111111", first.ID); fieldCodeOf(err) != "system.default.required" {
		t.Errorf("deactivate default: %v", err)
	}
	if _, err := g.MakeDefault(ctx, "11111111", ids[1]); err != nil {
		t.Fatal(err)
	}
	all, _ := st.ListSystems(ctx, "11111111")
	defaults := 0
	for _, s := range all {
		if s.Default {
			defaults++
			if s.ID != ids[1] {
				t.Errorf("default is %s, want %s", s.ID, ids[1])
			}
		}
	}
	if defaults != 1 {
		t.Errorf("%d defaults", defaults)
	}
	// Another organisation's system is not found through this one.
	if _, err := g.MakeDefault(ctx, "22222222", ids[1]); ErrorCode(err) != NotFound {
		t.Errorf("cross-organisation: %v", err)
	}
}

func TestTokensAuthenticateAndRotate(t *testing.T) {
	ctx := context.Background()
	st := &fakeRegistryStore{orgs: map[string]Organisation{"11111111": {CVR: "11111111", Kind: Authority, Active: true}}}
	g := &Registry{Store: st}
	s, tok, err := g.RegisterSystem(ctx, "11111111", SystemSpec{Name: "s", Role: SenderSystem})
	if err != nil {
		t.Fatal(err)
	}
	if s.TokenHash == tok || s.TokenHash != HashToken(tok) {
		t.Fatal("the token must be stored hashed")
	}
	if got, err := g.Authenticate(ctx, tok); err != nil || got.ID != s.ID {
		t.Fatalf("authenticate: %v", err)
	}
	_, tok2, err := g.RotateToken(ctx, "11111111", s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Authenticate(ctx, tok); ErrorCode(err) != Unauthorized {
		t.Errorf("old token after rotation: %v", err)
	}
	if _, err := g.Authenticate(ctx, tok2); err != nil {
		t.Errorf("new token: %v", err)
	}
	if _, err := g.Authenticate(ctx, ""); ErrorCode(err) != Unauthorized {
		t.Errorf("empty token: %v", err)
	}
}
