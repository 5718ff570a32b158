// Command testservers starts the scale-out set-up's servers — FerretDB on
// PostgreSQL (as the tests run it; POSTHUB_TEST_FERRETDB_HANDLER=sqlite for
// SQLite) and MinIO — through internal/testservers, prints where they
// listen as shell assignments, and keeps them until its standard input
// closes or it is signalled; then it stops them and removes their data.
// make bench uses it (scripts/bench-send.sh), so that its scale-out rows
// run on the same servers the tests do.
//
//	MONGO_URI=mongodb://127.0.0.1:PORT/
//	S3_ENDPOINT=127.0.0.1:PORT
//	S3_ACCESS_KEY=…
//	S3_SECRET_KEY=…
//	READY=1
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/posthub/posthub/internal/testservers"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	uri, endpoint, key, secret, err := testservers.Backends()
	if err != nil {
		testservers.Stop()
		fmt.Fprintln(os.Stderr, "testservers:", err)
		os.Exit(1)
	}
	fmt.Printf("MONGO_URI=%s\nS3_ENDPOINT=%s\nS3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nREADY=1\n", uri, endpoint, key, secret)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-sig:
	case <-eof:
	}
	testservers.Stop()
}
