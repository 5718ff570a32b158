package bolt_test

import (
	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/notify"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/viewer"
)

// The store is what cmd/posthub hands every consumer, each of which
// declares the small interface it uses: a change to either side that
// breaks one of them fails to compile here.
var (
	_ admin.Store             = (*bolt.Store)(nil)
	_ portal.Store            = (*bolt.Store)(nil)
	_ eventlog.Store          = (*bolt.Store)(nil)
	_ eventlog.SealerStore    = (*bolt.Store)(nil)
	_ eventlog.RetentionStore = (*bolt.Store)(nil)
	_ eventlog.Scanner        = (*bolt.Store)(nil)
	_ rbac.PolicyStore        = (*bolt.Store)(nil)
	_ rbac.Accounts           = (*bolt.Store)(nil)
	_ oidc.Accounts           = (*bolt.Store)(nil)
	_ retrieval.Store         = (*bolt.Store)(nil)
	_ viewer.Store            = (*bolt.Store)(nil)
	_ viewer.Mailboxes        = (*bolt.Store)(nil)
	_ notify.Store            = (*bolt.Store)(nil)
	_ notify.Mailboxes        = (*bolt.Store)(nil)
)
