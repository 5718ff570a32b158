// Package roundtrip counts the commands a MongoDB client sends per
// operation, for the command budgets of the Mongo store (storage/mongo's
// budget tests, cmd/posthub's end-to-end budget test and `make bench`'s
// "commands per operation" table).
//
// On a replica set a request's latency is the sum of the round trips it
// waits for one after another, so what is counted for each operation is:
//
//   - Total: every command (find, getMore, insert, update, delete, count…);
//   - Serial: the critical path, the longest chain of commands each of which
//     started after the one before it had ended (commands issued side by
//     side are one step of it);
//   - Writes: insert, update, delete, findAndModify and bulkWrite commands;
//   - SerialWrites: the most writes on any such chain (each costs a
//     majority-acknowledged, journaled write on the critical path).
//
// A Recorder is a mongo-driver event.CommandMonitor that files each command
// under a key found in the command's context (an operation name put there
// with WithOp, or any other key function, such as the HTTP request id);
// commands without one are filed under "". The counts are deterministic
// for a given code path: the Recorder holds every keyed command for a
// moment (dilate) before it is sent, so commands issued side by side always
// overlap however goroutines are scheduled, while a command issued after
// another ended (as the driver reports before returning) never does.
package roundtrip

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
)

// Counts are the commands of one operation.
type Counts struct {
	Serial, Total, Writes, SerialWrites int
	// Trace lists the commands in start order as "collection.command"; a
	// command prefixed "|" started while another was in flight.
	Trace []string
}

// String is "serial / total / writes (serial writes)" and the trace.
func (c Counts) String() string {
	return fmt.Sprintf("%d serial / %d total / %d writes (%d serial) [%s]", c.Serial, c.Total, c.Writes, c.SerialWrites,
		strings.Join(c.Trace, " "))
}

// Add is the counts of two operations run one after the other.
func (c Counts) Add(o Counts) Counts {
	tr := append([]string(nil), c.Trace...)
	if len(tr) > 0 && len(o.Trace) > 0 {
		tr = append(tr, "+")
	}
	return Counts{Serial: c.Serial + o.Serial, Total: c.Total + o.Total, Writes: c.Writes + o.Writes,
		SerialWrites: c.SerialWrites + o.SerialWrites, Trace: append(tr, o.Trace...)}
}

// After is the counts of an operation plus those of work it left running
// once it had returned (o): that work adds to the commands and writes, not
// to the critical path.
func (c Counts) After(o Counts) Counts {
	if o.Total == 0 {
		return c
	}
	c.Total += o.Total
	c.Writes += o.Writes
	c.Trace = append(append(append([]string(nil), c.Trace...), "»"), o.Trace...)
	return c
}

type opKey struct{}

// WithOp files the commands issued with ctx (and contexts derived from it)
// under name.
func WithOp(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, opKey{}, name)
}

// Op is the key function of WithOp.
func Op(ctx context.Context) string {
	s, _ := ctx.Value(opKey{}).(string)
	return s
}

// Dilate is how long the budget tests hold each command: long enough that
// a goroutine started beside a command overlaps it even on a loaded machine
// (under -race, with other test binaries on the same cores).
const Dilate = 20 * time.Millisecond

type command struct {
	name       string
	write      bool
	start, end time.Time // end is zero while in flight
}

type ref struct {
	key string
	i   int
}

// Recorder counts commands per key. It is safe for concurrent use.
type Recorder struct {
	key    func(context.Context) string
	dilate time.Duration

	mu      sync.Mutex
	ops     map[string][]command
	pending map[int64]ref // driver request id → command, while in flight
}

// NewRecorder returns a Recorder filing commands under key(ctx) (Op when
// key is nil) and holding each command that has a key for dilate before it
// is sent (background commands, key "", are not held).
func NewRecorder(key func(context.Context) string, dilate time.Duration) *Recorder {
	if key == nil {
		key = Op
	}
	return &Recorder{key: key, dilate: dilate, ops: map[string][]command{}, pending: map[int64]ref{}}
}

// Monitor is the event.CommandMonitor to give the client.
func (r *Recorder) Monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: r.started, Succeeded: r.succeeded, Failed: r.failed}
}

var writes = map[string]bool{"insert": true, "update": true, "delete": true, "findAndModify": true, "bulkWrite": true}

func (r *Recorder) started(ctx context.Context, e *event.CommandStartedEvent) {
	k := r.key(ctx)
	name := e.CommandName
	if v, err := e.Command.LookupErr(e.CommandName); err == nil {
		if s, ok := v.StringValueOK(); ok {
			name = s + "." + name
		}
	}
	r.mu.Lock()
	r.ops[k] = append(r.ops[k], command{name: name, write: writes[e.CommandName], start: time.Now()})
	r.pending[e.RequestID] = ref{k, len(r.ops[k]) - 1}
	r.mu.Unlock()
	if r.dilate > 0 && k != "" {
		time.Sleep(r.dilate)
	}
}

func (r *Recorder) finished(id int64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pending[id]
	if !ok {
		return
	}
	delete(r.pending, id)
	if cs := r.ops[p.key]; p.i < len(cs) {
		cs[p.i].end = now
	}
}

func (r *Recorder) succeeded(_ context.Context, e *event.CommandSucceededEvent) {
	r.finished(e.RequestID)
}
func (r *Recorder) failed(_ context.Context, e *event.CommandFailedEvent) { r.finished(e.RequestID) }

// count computes the counts of a list of commands in start order.
func count(cs []command) Counts {
	var c Counts
	depth := make([]int, len(cs))  // longest chain ending at i
	wdepth := make([]int, len(cs)) // most writes on a chain ending at i
	for i, x := range cs {
		overlap := false
		for j := 0; j < i; j++ {
			p := cs[j]
			if !p.end.IsZero() && !p.end.After(x.start) {
				depth[i] = max(depth[i], depth[j])
				wdepth[i] = max(wdepth[i], wdepth[j])
			} else {
				overlap = true
			}
		}
		depth[i]++
		if x.write {
			wdepth[i]++
			c.Writes++
		}
		c.Serial = max(c.Serial, depth[i])
		c.SerialWrites = max(c.SerialWrites, wdepth[i])
		c.Total++
		if overlap {
			c.Trace = append(c.Trace, "|"+x.name)
		} else {
			c.Trace = append(c.Trace, x.name)
		}
	}
	return c
}

// Take returns the counts filed under key and forgets them.
func (r *Recorder) Take(key string) Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.ops[key]
	delete(r.ops, key)
	for id, p := range r.pending {
		if p.key == key {
			delete(r.pending, id) // still running: its end is not filed anywhere
		}
	}
	return count(cs)
}

// Settle waits until no command of key is in flight and none has started
// for quiet (work a request left running, such as a hook it started), at
// most max.
func (r *Recorder) Settle(key string, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		cs := r.ops[key]
		done := true
		for _, c := range cs {
			if c.end.IsZero() || time.Since(c.start) < quiet {
				done = false
			}
		}
		r.mu.Unlock()
		if done {
			return
		}
		time.Sleep(quiet / 4)
	}
}

// Keys lists the keys with counts, sorted.
func (r *Recorder) Keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []string
	for k := range r.ops {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
