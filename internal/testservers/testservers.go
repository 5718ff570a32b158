// Package testservers gives tests the real servers posthub's production
// backends talk to: MinIO for the S3 blob store, FerretDB for the MongoDB
// store, and an OpenID provider (the example OP of github.com/zitadel/oidc/v3)
// for OpenID Connect logins. FerretDB runs on its PostgreSQL handler over a
// PostgreSQL server of its own (Debian's package; initdb into a temporary
// directory, started as a non-root user when the tests run as root, as in
// CI). scripts/install-test-servers.sh builds MinIO, FerretDB and the OP and
// installs PostgreSQL when it is missing.
//
// What it guarantees:
//   - At most one server of each kind per test binary, started lazily by the
//     first test that asks, on a free loopback port, with its data in a fresh
//     temporary directory, and handed out only once it answers.
//   - The servers stop when the tests end: Main stops them after m.Run, and
//     because each runs in its own process group with a parent-death signal
//     (SIGKILL), a test binary that panics, times out or is killed leaves no
//     server running; the next test binary to start that server removes the
//     dead one's data directory.
//   - Tests share a server, not data: BucketName and DatabaseName give each
//     test its own namespace.
//
// POSTHUB_TEST_FERRETDB_HANDLER=sqlite runs FerretDB on its SQLite handler
// instead (no PostgreSQL needed); CI uses the PostgreSQL handler, which is
// 3-6x faster at the same correctness (DESIGN.md).
//
// Binaries are looked up in $POSTHUB_TEST_BIN, then $PATH (PostgreSQL's also
// in /usr/lib/postgresql/*/bin, where Debian puts them). When one is
// missing the test is skipped with a message saying how to install it, unless
// POSTHUB_TEST_SERVERS=require (as in `make test` and CI), in which case it
// fails. A binary that is present but does not start always fails the test.
//
// Use it from a package's tests with
//
//	func TestMain(m *testing.M) { testservers.Main(m) }
package testservers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

const (
	// binEnv names the directory the install script fills.
	binEnv = "POSTHUB_TEST_BIN"
	// requireEnv, when "require" (or any non-empty value but "skip"), turns a
	// missing server into a failure instead of a skip.
	requireEnv = "POSTHUB_TEST_SERVERS"
	// handlerEnv chooses FerretDB's backend: postgresql (default) or sqlite.
	handlerEnv = "POSTHUB_TEST_FERRETDB_HANDLER"

	installHint = "run `make testservers` (scripts/install-test-servers.sh .cache/bin) and set POSTHUB_TEST_BIN=.cache/bin, or run `make test`"

	startTimeout = 90 * time.Second
	stopTimeout  = 15 * time.Second

	// MinIO's root credentials; the server only listens on loopback.
	minioUser     = "posthub-test"
	minioPassword = "posthub-test-secret"
)

// errMissing marks a server whose binary is not installed.
var errMissing = errors.New("not installed")

// The per-binary servers. Package state is unavoidable here: the point is
// one server per test binary, shared by all its tests.
var (
	minio    server
	ferretdb server
	oidcOP   server
	postgres server
	names    atomic.Uint64
)

// Main runs the package's tests, then stops every server they started and
// exits with the tests' status, after the cleanups given (os.Exit runs
// no deferred call). Call it from TestMain.
func Main(m *testing.M, cleanup ...func()) {
	code := m.Run()
	stopAll()
	for _, c := range cleanup {
		c()
	}
	os.Exit(code)
}

// MinIO returns the address (host:port, plain HTTP) and root credentials of
// this test binary's MinIO server, starting it on first use. Use BucketName
// for a bucket of the test's own.
func MinIO(tb testing.TB) (endpoint, accessKey, secretKey string) {
	tb.Helper()
	minio.get(tb, "minio", startMinIO)
	return minio.addr, minioUser, minioPassword
}

// FerretDB returns a mongodb:// URI for this test binary's FerretDB server
// (PostgreSQL handler, or SQLite with POSTHUB_TEST_FERRETDB_HANDLER=sqlite),
// starting it, and the PostgreSQL server under it, on first use. Use
// DatabaseName for a database of the test's own.
func FerretDB(tb testing.TB) (uri string) {
	tb.Helper()
	handler := FerretDBHandler()
	if handler == "postgresql" {
		postgres.get(tb, "postgres", startPostgres)
	}
	ferretdb.get(tb, "ferretdb", func(s *server, bin string) error { return startFerretDB(s, bin, handler) })
	return "mongodb://" + ferretdb.addr + "/"
}

// Backends starts, outside a test, the servers of the scale-out set-up —
// FerretDB (on the handler FerretDBHandler names, with its PostgreSQL) and
// MinIO — for `make bench` (internal/cmd/testservers), and returns the
// FerretDB URI, MinIO's endpoint and credentials, and Stop, which ends
// them. The same guarantees hold as in tests: fresh directories, loopback
// ports, no server outliving this process.
func Backends() (mongoURI, s3Endpoint, accessKey, secretKey string, err error) {
	handler := FerretDBHandler()
	if handler == "postgresql" {
		if err := postgres.ensure("postgres", startPostgres); err != nil {
			return "", "", "", "", err
		}
	}
	if err := ferretdb.ensure("ferretdb", func(s *server, bin string) error { return startFerretDB(s, bin, handler) }); err != nil {
		return "", "", "", "", err
	}
	if err := minio.ensure("minio", startMinIO); err != nil {
		return "", "", "", "", err
	}
	return "mongodb://" + ferretdb.addr + "/", minio.addr, minioUser, minioPassword, nil
}

// Stop ends every server this process started (what Main does after the
// tests).
func Stop() { stopAll() }

// FerretDBHandler names the FerretDB backend the tests run on:
// "postgresql" (the default) or "sqlite".
func FerretDBHandler() string {
	if os.Getenv(handlerEnv) == "sqlite" {
		return "sqlite"
	}
	return "postgresql"
}

// BucketName returns a valid S3 bucket name unique to this call, derived
// from the test's name so a leftover bucket says whose it is.
func BucketName(tb testing.TB) string {
	return uniqueName(tb, "t-", '-', 63)
}

// DatabaseName returns a valid MongoDB (and FerretDB) database name unique
// to this call, derived from the test's name.
func DatabaseName(tb testing.TB) string {
	return uniqueName(tb, "t_", '_', 63)
}

// uniqueName is prefix + the test name in [a-z0-9] with sep for anything
// else + sep + a counter and random suffix, at most max bytes.
func uniqueName(tb testing.TB, prefix string, sep byte, max int) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := fmt.Sprintf("%c%d%c%s", sep, names.Add(1), sep, hex.EncodeToString(b[:]))
	var s strings.Builder
	s.WriteString(prefix)
	lastSep := true
	for _, r := range strings.ToLower(tb.Name()) {
		if s.Len()+len(suffix) >= max {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			s.WriteRune(r)
			lastSep = false
		} else if !lastSep {
			s.WriteByte(sep)
			lastSep = true
		}
	}
	name := strings.TrimRight(s.String(), string(sep)) + suffix
	if len(name) > max {
		name = name[len(name)-max:]
	}
	return name
}

// server is one lazily started server process.
type server struct {
	once sync.Once
	err  error
	addr string // host:port it listens on

	mu   sync.Mutex // guards the fields below against stopAll
	cmd  *exec.Cmd
	done <-chan struct{} // closed when the process has been reaped
	dir  string          // temporary directory holding its data and log
}

// ensure starts the server once; it returns why it is unavailable.
func (s *server) ensure(name string, start func(s *server, bin string) error) error {
	s.once.Do(func() {
		find := lookBin
		if name == "postgres" {
			find = lookPostgres
		}
		bin, err := find(name)
		if err != nil {
			s.err = err
			return
		}
		s.err = start(s, bin)
	})
	return s.err
}

// get starts the server once and fails or skips tb if it is unavailable.
func (s *server) get(tb testing.TB, name string, start func(s *server, bin string) error) {
	tb.Helper()
	if s.ensure(name, start) == nil {
		return
	}
	if errors.Is(s.err, errMissing) && !required() {
		tb.Skipf("testservers: %v; %s", s.err, installHint)
	}
	if errors.Is(s.err, errMissing) {
		tb.Fatalf("testservers: %v (%s=%s); %s", s.err, requireEnv, os.Getenv(requireEnv), installHint)
	}
	tb.Fatalf("testservers: %v", s.err)
}

func required() bool {
	v := os.Getenv(requireEnv)
	return v != "" && v != "skip"
}

// SkipUnlessRequired skips tb for a reason outside the test's control (a
// server or a privilege this machine lacks), or fails it when
// POSTHUB_TEST_SERVERS=require (`make test`, CI), where such a test must
// run.
func SkipUnlessRequired(tb testing.TB, reason string) {
	tb.Helper()
	if required() {
		tb.Fatalf("%s (%s=%s: this test must run here)", reason, requireEnv, os.Getenv(requireEnv))
	}
	tb.Skip(reason)
}

// lookBin finds name in $POSTHUB_TEST_BIN, then $PATH.
func lookBin(name string) (string, error) {
	if dir := os.Getenv(binEnv); dir != "" {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s binary %w: not in $%s (%q) nor $PATH", name, errMissing, binEnv, os.Getenv(binEnv))
}

func startMinIO(s *server, bin string) error {
	return s.start("minio", func(dir string, ports []int) (*exec.Cmd, string, error) {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		cmd := exec.Command(bin, "server", filepath.Join(dir, "data"),
			"--address", addr,
			"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
			"--quiet")
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+minioUser,
			"MINIO_ROOT_PASSWORD="+minioPassword,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			// Allows a data directory on the root disk, as in CI.
			"MINIO_CI_CD=on",
			"HOME="+dir,
		)
		return cmd, addr, nil
	}, 2, minioReady)
}

// minioReady asks for the bucket list: MinIO's health endpoint answers
// before its object layer is initialised, a real request does not.
func minioReady(addr string) error {
	c, err := miniogo.New(addr, &miniogo.Options{Creds: credentials.NewStaticV4(minioUser, minioPassword, ""), MaxRetries: 1})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = c.ListBuckets(ctx)
	return err
}

func startFerretDB(s *server, bin, handler string) error {
	return s.start("ferretdb", func(dir string, ports []int) (*exec.Cmd, string, error) {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		for _, d := range []string{"sqlite", "state"} {
			_ = os.MkdirAll(filepath.Join(dir, d), 0o700)
		}
		backend := []string{"--handler=sqlite", "--sqlite-url=file:" + filepath.Join(dir, "sqlite") + "/"}
		if handler == "postgresql" {
			// One PostgreSQL per test binary; FerretDB keeps every MongoDB
			// database as a schema of this one.
			backend = []string{"--handler=postgresql", "--postgresql-url=postgres://" + pgUser + "@" + postgres.addr + "/postgres?sslmode=disable"}
		}
		cmd := exec.Command(bin, append(backend,
			"--listen-addr="+addr,
			"--state-dir="+filepath.Join(dir, "state"),
			"--telemetry=disable",
			"--debug-addr=-",
			"--log-level=warn",
		)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		return cmd, addr, nil
	}, 1, ferretdbReady)
}

// ferretdbReady lists the databases: the first command that reaches the
// backend (FerretDB answers its port before PostgreSQL has let it in).
func ferretdbReady(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := mongodrv.Connect(options.Client().ApplyURI("mongodb://" + addr + "/").SetServerSelectionTimeout(2 * time.Second))
	if err != nil {
		return err
	}
	defer c.Disconnect(context.Background())
	_, err = c.ListDatabaseNames(ctx, bson.D{})
	return err
}

// start runs the command build makes in a fresh temporary directory on
// nports free loopback ports and waits until ready succeeds. A port taken
// between choosing and binding it makes the server exit; start then retries.
func (s *server) start(name string, build func(dir string, ports []int) (*exec.Cmd, string, error), nports int, ready func(addr string) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.startOnce(name, build, nports, ready); err == nil {
			return nil
		}
	}
	return err
}

func (s *server) startOnce(name string, build func(dir string, ports []int) (*exec.Cmd, string, error), nports int, ready func(addr string) error) error {
	removeStaleDirs(name)
	dir, err := os.MkdirTemp("", "posthub-"+name+"-")
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("%s: %w", name, err)
	}
	ports, err := freePorts(nports)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("%s: %w", name, err)
	}
	cmd, addr, err := build(dir, ports)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("%s: %w", name, err)
	}
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("%s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	var cred *syscall.Credential
	if cmd.SysProcAttr != nil {
		cred = cmd.SysProcAttr.Credential // PostgreSQL refuses to run as root
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so stop can signal the server and anything it
		// spawned, and a ^C meant for `go test` is handled by us.
		Setpgid: true,
		// Killed when the thread that started it exits; see startLocked.
		// (Go sets it after switching to Credential, so it survives that.)
		Pdeathsig:  syscall.SIGKILL,
		Credential: cred,
	}
	done, err := startLocked(cmd)
	logf.Close()
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.mu.Lock()
	s.cmd, s.done, s.dir, s.addr = cmd, done, dir, addr
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			err := fmt.Errorf("%s exited before it was ready (%v); log:\n%s", name, cmd.ProcessState, tail(logPath))
			s.stop()
			return err
		default:
		}
		rerr := ready(addr)
		if rerr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("%s not ready on %s after %v: %v; log:\n%s", name, addr, startTimeout, rerr, tail(logPath))
			s.stop()
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startLocked starts cmd from a goroutine locked to its OS thread, which
// then waits for the process. Pdeathsig fires when the starting thread
// exits, not the process; Go may retire an idle thread at any time, but
// never one a goroutine is locked to, so the server lives exactly as long as
// the waiting goroutine or the whole test binary. The returned channel is
// closed once the process has been reaped.
func startLocked(cmd *exec.Cmd) (<-chan struct{}, error) {
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends with this goroutine, after the
		// process has exited.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	return done, <-started
}

// stop ends the server's process group (SIGTERM, then SIGKILL) and removes
// its directory. It is safe to call more than once.
func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
	// Children that outlived the leader.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	_ = os.RemoveAll(s.dir)
	s.cmd, s.dir = nil, ""
}

func stopAll() {
	var wg sync.WaitGroup
	for _, s := range []*server{&minio, &ferretdb, &oidcOP} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop()
		}()
	}
	wg.Wait()
	// After FerretDB, its client.
	postgres.stop()
}

// ownerFile in a server's directory holds the pid of the test binary that
// started it.
const ownerFile = "owner.pid"

// removeStaleDirs removes the directories of servers whose test binary is
// gone: Pdeathsig kills the server of a crashed binary, but nothing else
// would remove its data.
func removeStaleDirs(name string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "posthub-"+name+"-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // being set up, or not ours
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.RemoveAll(dir)
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the end of a server's log for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
