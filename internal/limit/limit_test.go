package limit

import (
	"net"
	"net/netip"
	"testing"
)

func TestAddressesAreCountedByClient(t *testing.T) {
	l := NewListener(nil, Conns{Shared: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, nil)
	key := func(s string) string {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return l.addrKey(a).String()
	}
	for _, c := range []struct{ name, addr, want string }{
		{"an IPv4 client is its address", "192.0.2.7:4711", "192.0.2.7/32"},
		{"an IPv4 client over IPv6 is its IPv4 address", "[::ffff:192.0.2.7]:4711", "192.0.2.7/32"},
		{"an IPv6 client is its /64", "[2001:db8:1:2:3:4:5:6]:4711", "2001:db8:1:2::/64"},
		{"a shared address (a trusted proxy) counts in the total only", "10.0.0.9:4711", "invalid Prefix"},
	} {
		if got := key(c.addr); got != c.want {
			t.Errorf("%s: %s counts as %s, want %s", c.name, c.addr, got, c.want)
		}
	}
	if k := l.addrKey(&net.UnixAddr{Name: "/run/posthub.sock", Net: "unix"}); k.IsValid() {
		t.Errorf("a Unix socket counts as %s, want only in the total", k)
	}
}

func TestAClosedConnectionGivesItsPlaceBackOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, Conns{PerAddr: 1, Total: 1}, nil)
	defer l.Close()
	for i := range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if l.Open() != 1 {
			t.Fatalf("round %d: %d open, want 1", i, l.Open())
		}
		sc.Close()
		sc.Close() // a second Close gives nothing back twice
		if l.Open() != 0 {
			t.Fatalf("round %d: %d open after close, want 0", i, l.Open())
		}
	}
}
