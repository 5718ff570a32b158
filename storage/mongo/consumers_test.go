package mongo_test

import (
	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/notify"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/viewer"
)

// The store is what cmd/posthub hands every consumer, each of which
// declares the small interface it uses: a change to either side that
// breaks one of them fails to compile here.
var (
	_ admin.Store             = (*mongo.Store)(nil)
	_ portal.Store            = (*mongo.Store)(nil)
	_ eventlog.Store          = (*mongo.Store)(nil)
	_ eventlog.SealerStore    = (*mongo.Store)(nil)
	_ eventlog.RetentionStore = (*mongo.Store)(nil)
	_ eventlog.Scanner        = (*mongo.Store)(nil)
	_ rbac.PolicyStore        = (*mongo.Store)(nil)
	_ rbac.Accounts           = (*mongo.Store)(nil)
	_ oidc.Accounts           = (*mongo.Store)(nil)
	_ retrieval.Store         = (*mongo.Store)(nil)
	_ viewer.Store            = (*mongo.Store)(nil)
	_ viewer.Mailboxes        = (*mongo.Store)(nil)
	_ notify.Store            = (*mongo.Store)(nil)
	_ notify.Mailboxes        = (*mongo.Store)(nil)
)
