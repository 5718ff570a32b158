package rbac_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/storage/bolt"
)

func TestMain(m *testing.M) { testservers.Main(m) }

func boltStore(t testing.TB) hub.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDecisions(t *testing.T) {
	ctx := context.Background()
	store := boltStore(t)
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []rbac.Grant{
		{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"},
		{User: "stine", Role: rbac.StatisticsAdm, Domain: "11111111"},
		{User: "stine", Role: rbac.SystemManager, Domain: "22222222"},
		{User: "aud", Role: rbac.Auditor, Domain: rbac.Global},
	} {
		if err := en.Grant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	user := func(id string) rbac.Subject { return rbac.Subject{User: id} }
	sender := rbac.Subject{Role: rbac.SenderSystem, Home: "11111111"}
	cases := []struct {
		name string
		sub  rbac.Subject
		dom  string
		perm rbac.Perm
		want bool
	}{
		{"an organisation role holds its permissions in its organisation", user("anne"), "11111111", rbac.SystemsWrite, true},
		{"an organisation role holds nothing in another organisation", user("anne"), "22222222", rbac.SystemsRead, false},
		{"an organisation role holds no global permission", user("anne"), rbac.Global, rbac.OrgsCreate, false},
		{"roles are per organisation", user("stine"), "11111111", rbac.SystemsWrite, false},
		{"roles are per organisation (2)", user("stine"), "22222222", rbac.SystemsWrite, true},
		{"a global role applies in every organisation", user("aud"), "33333333", rbac.EventLogRead, true},
		{"the auditor changes nothing", user("aud"), "33333333", rbac.SystemsWrite, false},
		{"a system holds its role in its own organisation", sender, "11111111", rbac.MemosSend, true},
		{"a system holds nothing in another organisation", sender, "22222222", rbac.MemosSend, false},
		{"a sender system administers nothing", sender, "11111111", rbac.SystemsRead, false},
		{"an unknown permission is refused", user("anne"), "11111111", rbac.Perm("systems:*"), false},
		{"an empty domain is refused", user("anne"), "", rbac.OrgsRead, false},
		{"an overlong domain is refused, to a global role too", user("aud"), strings.Repeat("1", 65), rbac.EventLogRead, false},
		{"an unknown user holds nothing", user("nobody"), "11111111", rbac.OrgsRead, false},
		{"an empty subject holds nothing", rbac.Subject{}, "11111111", rbac.OrgsRead, false},
	}
	for _, c := range cases {
		if got := en.Allowed(c.sub, c.dom, c.perm); got != c.want {
			t.Errorf("%s: Allowed(%+v, %q, %s) = %v", c.name, c.sub, c.dom, c.perm, got)
		}
	}
	// Domains chosen by a client (a header, a query) do not fill the
	// decision cache with their bytes.
	before := rbac.CacheLen(en)
	for i := range 1000 {
		en.Allowed(user("aud"), fmt.Sprintf("%d%s", i, strings.Repeat("x", 64<<10)), rbac.EventLogRead)
	}
	if n := rbac.CacheLen(en); n != before {
		t.Errorf("1,000 overlong domains left %d decisions cached (before: %d)", n, before)
	}
	// A revocation takes effect at once on this instance (the cache is dropped).
	if err := en.Revoke(ctx, rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}); err != nil {
		t.Fatal(err)
	}
	if en.Allowed(user("anne"), "11111111", rbac.SystemsWrite) {
		t.Error("revoked privilege still in force")
	}
	if err := en.Revoke(ctx, rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}); hub.ErrorCode(err) != hub.NotFound {
		t.Errorf("second revoke: %v, want not_found", err)
	}
	for _, bad := range []rbac.Grant{
		{User: "x", Role: rbac.Auditor, Domain: "11111111"},
		{User: "x", Role: rbac.OrgAdmin, Domain: rbac.Global},
		{User: "x", Role: rbac.SenderSystem, Domain: "11111111"},
		{User: "X Y", Role: rbac.OrgAdmin, Domain: "11111111"},
		{User: "x", Role: "NO_SUCH", Domain: "11111111"},
	} {
		if err := en.Grant(ctx, bad); hub.ErrorCode(err) != hub.Invalid {
			t.Errorf("grant %+v: %v, want invalid", bad, err)
		}
	}
}

func TestValidUserIDBound(t *testing.T) {
	for _, c := range []struct {
		name string
		id   string
		want bool
	}{
		{"an id of MaxUserIDLen bytes is valid", strings.Repeat("a", rbac.MaxUserIDLen), true},
		{"an id one byte longer is not", strings.Repeat("a", rbac.MaxUserIDLen+1), false},
		{"an empty id is not", "", false},
	} {
		if got := rbac.ValidUserID(c.id); got != c.want {
			t.Errorf("%s: ValidUserID(%d bytes) = %v", c.name, len(c.id), got)
		}
	}
}

func TestPasswords(t *testing.T) {
	h, err := rbac.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !rbac.CheckPassword(h, "correct horse battery") || rbac.CheckPassword(h, "correct horse batterz") {
		t.Fatal("argon2id check")
	}
	if _, err := rbac.HashPassword("short"); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("short password: %v", err)
	}
}

func TestSessions(t *testing.T) {
	s := &rbac.Sessions{Key: make([]byte, 32)}
	ss, v := s.Issue("anne", 7)
	got, ok := s.Verify(v)
	if !ok || got.User != "anne" || got.Generation != 7 || !s.CheckCSRF(got, s.CSRFToken(ss)) {
		t.Fatalf("a fresh session verifies: %+v %v", got, ok)
	}
	for _, bad := range []string{v[:len(v)-1] + "x", "mallory" + v[4:], "anne|8" + v[6:], "", "a|b"} {
		if _, ok := s.Verify(bad); ok {
			t.Errorf("tampered cookie %q verified", bad)
		}
	}
	other := &rbac.Sessions{Key: []byte("another key of thirty-two bytes!")}
	if _, ok := other.Verify(v); ok {
		t.Error("a cookie verified under another key")
	}
	if s.CheckCSRF(got, "") || s.CheckCSRF(got, other.CSRFToken(ss)) {
		t.Error("CSRF token accepted that is not the session's")
	}
}
