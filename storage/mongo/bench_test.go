package mongo_test

import (
	"fmt"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

func openB(b *testing.B) hub.Store { return open(b) }

// The mongo rows of the storage benchmarks (on FerretDB here; on MongoDB
// in production).
func BenchmarkPutMessage(b *testing.B) {
	for _, w := range []int{1, 16} {
		b.Run(fmt.Sprint("writers=", w), func(b *testing.B) { storagetest.BenchPutMessage(b, openB, w) })
	}
}

func BenchmarkLeaseAck(b *testing.B) {
	for _, w := range []int{1, 16} {
		b.Run(fmt.Sprint("writers=", w), func(b *testing.B) { storagetest.BenchLeaseAck(b, openB, w) })
	}
}
