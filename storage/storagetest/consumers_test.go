package storagetest_test

import (
	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/notify"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/viewer"
)

// cmd/posthub hands the store (a hub.Store, which every backend asserts
// it is) to every consumer, and each consumer declares the small
// interface it uses (CONVENTIONS.md): a change to either side that breaks
// one of them fails to compile here, for every backend at once.
var (
	_ admin.Store             = hub.Store(nil)
	_ portal.Store            = hub.Store(nil)
	_ eventlog.Store          = hub.Store(nil)
	_ eventlog.SealerStore    = hub.Store(nil)
	_ eventlog.RetentionStore = hub.Store(nil)
	_ eventlog.Scanner        = hub.Store(nil)
	_ rbac.PolicyStore        = hub.Store(nil)
	_ rbac.Accounts           = hub.Store(nil)
	_ oidc.Accounts           = hub.Store(nil)
	_ retrieval.Store         = hub.Store(nil)
	_ viewer.Store            = hub.Store(nil)
	_ viewer.Mailboxes        = hub.Store(nil)
	_ notify.Store            = hub.Store(nil)
	_ notify.Mailboxes        = hub.Store(nil)
)
