package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthub/posthub/internal/testservers"
)

// TestMain gives this package's tests the real MinIO and FerretDB
// (testservers) and removes the posthub binary built for process tests.
func TestMain(m *testing.M) {
	// Main ends with os.Exit, which runs no deferred call: the built
	// binary (~50 MB) goes in its cleanup.
	testservers.Main(m, func() {
		if binDir != "" {
			os.RemoveAll(binDir)
		}
	})
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// posthubBinary builds this command once per test binary (go build, no race
// detector: the processes are the system under test, not the test).
func posthubBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "posthub-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "posthub")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// hubProcess is a `posthub serve` process.
type hubProcess struct {
	cmd  *exec.Cmd
	base string
	done chan struct{}
	logs *strings.Builder
	mu   sync.Mutex
}

var listenRe = regexp.MustCompile(`posthub listening.* url=(\S+)`)

// startHubProcess starts `posthub serve` with args (plus -addr
// 127.0.0.1:0) and waits until it listens. It is stopped with SIGTERM at
// cleanup.
func startHubProcess(t *testing.T, args ...string) *hubProcess {
	t.Helper()
	bin := posthubBinary(t)
	cmd := exec.Command(bin, append([]string{"serve", "-addr", "127.0.0.1:0", "-log-level", "info"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &hubProcess{cmd: cmd, done: make(chan struct{}), logs: &strings.Builder{}}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if p.logs.Len() < 1<<20 {
				p.logs.WriteString(line + "\n")
			}
			p.mu.Unlock()
			if m := listenRe.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case p.base = <-addr:
	case <-p.done:
		t.Fatalf("posthub serve exited: %s", p.log())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("posthub serve did not start: %s", p.log())
	}
	t.Cleanup(p.stop)
	return p
}

func (p *hubProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *hubProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// runFetchProcess runs `posthub fetch` to completion (or until ctx ends).
func runFetchProcess(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, posthubBinary(t), append([]string{"fetch", "-q"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
