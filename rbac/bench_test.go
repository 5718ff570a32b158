package rbac_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// BenchmarkDecision is one authorisation decision for a user, over 1,000
// users with roles in 100 organisations (make bench: decisions/s on one
// core). Decisions come from the per-(subject, domain) bits.
func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	store := boltStore(b)
	const users, orgs = 1000, 100
	subs := make([]rbac.Subject, users)
	doms := make([]string, users)
	for i := range users {
		subs[i], doms[i] = rbac.Subject{User: fmt.Sprint("u", i)}, fmt.Sprintf("%08d", 10000000+i%orgs)
		if err := store.AddPolicy(ctx, hub.PolicyLine{Ptype: "g", V: []string{rbac.UserSubject(subs[i].User), rbac.Roles[i%8].Name, doms[i]}}); err != nil {
			b.Fatal(err)
		}
	}
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		b.Fatal(err)
	}
	perms := []rbac.Perm{rbac.OrgsRead, rbac.SystemsWrite, rbac.StatisticsRead, rbac.EventLogRead}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u := i % users
		en.Allowed(subs[u], doms[u], perms[i&3])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
