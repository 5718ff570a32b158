package bolt_test

import (
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

func TestMailboxStore(t *testing.T) {
	storagetest.TestMailboxStore(t, func(t *testing.T) hub.MailboxStore { return open(t) })
}
