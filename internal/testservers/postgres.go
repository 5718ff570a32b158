package testservers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgUser is the superuser initdb creates; FerretDB logs in as it (trust
// authentication, loopback only).
const pgUser = "posthub"

// lookPostgres finds the postgres server binary: $POSTHUB_TEST_BIN, $PATH,
// then Debian's /usr/lib/postgresql/<version>/bin (not on $PATH), newest
// version first. initdb must sit beside it.
func lookPostgres(name string) (string, error) {
	if p, err := lookBin(name); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return p, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		p := filepath.Join(d, "postgres")
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("postgres (PostgreSQL server, with initdb beside it) %w: not in $%s, $PATH nor /usr/lib/postgresql/*/bin (apt-get install postgresql)", errMissing, binEnv)
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// runAs returns the credential PostgreSQL runs under: the current user, or
// when that is root (which PostgreSQL refuses) the "postgres" user Debian's
// package creates, else "nobody".
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
		}
	}
	return nil, fmt.Errorf("running as root and neither user postgres nor nobody exists to run PostgreSQL as")
}

// startPostgres initialises a cluster in the server's temporary directory
// and runs postgres on a free loopback port (and a Unix socket in the same
// directory). Durability settings are off: the tests check posthub's
// logic, and the hub's durability claims rest on the real MongoDB's write
// concern, not on this server.
func startPostgres(s *server, bin string) error {
	return s.start("postgres", func(dir string, ports []int) (*exec.Cmd, string, error) {
		cred, err := runAs()
		if err != nil {
			return nil, "", err
		}
		data := filepath.Join(dir, "data")
		if err := os.Mkdir(data, 0o700); err != nil {
			return nil, "", err
		}
		if cred != nil {
			// The directory is root's 0700: let the server's user in.
			if err := os.Chmod(dir, 0o755); err != nil {
				return nil, "", err
			}
			if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, "", err
			}
		}
		initdb := exec.Command(filepath.Join(filepath.Dir(bin), "initdb"), "-D", data, "-U", pgUser,
			"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
		initdb.Dir = dir
		initdb.Env = append(os.Environ(), "HOME="+data)
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := initdb.CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("initdb: %v: %s", err, tail2(out))
		}
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		cmd := exec.Command(bin, "-D", data,
			"-h", "127.0.0.1", "-p", strconv.Itoa(ports[0]),
			"-k", data, // the Unix socket, in a directory the server's user owns
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200", "-c", "shared_buffers=128MB",
			"-c", "logging_collector=off", "-c", "log_min_messages=warning")
		cmd.Env = append(os.Environ(), "HOME="+data)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return cmd, addr, nil
	}, 1, postgresReady(filepath.Dir(bin)))
}

// postgresReady asks pg_isready when it is there (it tells "starting up"
// from "accepting connections"), else dials the port.
func postgresReady(binDir string) func(addr string) error {
	return func(addr string) error {
		host, port, _ := net.SplitHostPort(addr)
		if p := filepath.Join(binDir, "pg_isready"); fileExists(p) {
			out, err := exec.Command(p, "-h", host, "-p", port, "-U", pgUser, "-d", "postgres", "-t", "2").CombinedOutput()
			if err != nil {
				return fmt.Errorf("pg_isready: %v: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func tail2(b []byte) string {
	const max = 2 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
