package bfd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// netnsEnv marks the test binary running in a network namespace of its own
// (inOwnNetns), with these addresses on its loopback.
const netnsEnv = "PORTICO_BFD_TEST_NETNS"

var nsAddrs = []netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")}

// inOwnNetns runs the calling test again in a child process in a network
// namespace of its own (unshare --net), whose loopback has nsAddrs beside
// 127.0.0.0/8: the host's loopback has only ::1, and two BFD ends need two
// addresses. It returns true in the parent (the child's result is the
// test's) and false in the child, which then runs the test's body.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return false
	}
	args := []string{"--net", os.Args[0], "-test.run=^" + t.Name() + "$", "-test.count=1", "-test.v"}
	if os.Geteuid() != 0 {
		args = append([]string{"--map-root-user"}, args...)
	}
	if err := exec.Command("unshare", "--net", "true").Run(); err != nil && os.Geteuid() == 0 {
		t.Skipf("needs unshare --net: %v", err)
	} else if err := exec.Command("unshare", "--map-root-user", "--net", "true").Run(); err != nil && os.Geteuid() != 0 {
		t.Skipf("needs unshare --map-root-user --net: %v", err)
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a network namespace of its own:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its network namespace: %v", err)
	}
	return true
}

// setupNetns brings the child's loopback up with nsAddrs.
func setupNetns() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	for _, a := range nsAddrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(128, 128)}, Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(lo, addr); err != nil {
			return err
		}
	}
	// The kernel adds an IPv6 address's local route moments after the
	// address (from a work queue); a socket connected before it keeps a
	// route that says unreachable.
	for _, a := range nsAddrs {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			rs, err := netlink.RouteGet(a.AsSlice())
			if err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no local route to %s: %v %v", a, rs, err)
			}
		}
	}
	return nil
}

// TestManagersOverUDPv6: RFC 5881 over IPv6 (hop limit 255, port 3784):
// two managers on IPv6 addresses bring their session Up, and AdminDown
// takes the other end Down.
func TestManagersOverUDPv6(t *testing.T) {
	if inOwnNetns(t) {
		return
	}
	a := &Manager{Locals: []netip.Addr{nsAddrs[0]}, Log: testr.New(t)}
	b := &Manager{Locals: []netip.Addr{nsAddrs[1]}, Log: testr.New(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, m := range []*Manager{a, b} {
		go func() {
			if err := m.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	cfg := Config{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}
	if err := a.Add(nsAddrs[1], cfg); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(nsAddrs[0], cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, nsAddrs[1], Up, 5*time.Second)
	waitFor(t, b, nsAddrs[0], Up, 5*time.Second)
	a.Remove(nsAddrs[1])
	waitFor(t, b, nsAddrs[0], Down, 5*time.Second)
}

// TestHopLimitChecked: a packet that arrives with a TTL or hop limit other
// than 255 may come from further than one hop and is dropped (RFC 5881 5),
// in both families; the same packets with 255 bring the session to Init.
func TestHopLimitChecked(t *testing.T) {
	if inOwnNetns(t) {
		return
	}
	for _, tc := range []struct {
		name        string
		local, peer netip.Addr
	}{
		{"IPv4", netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
		{"IPv6", nsAddrs[0], nsAddrs[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manager{Locals: []netip.Addr{tc.local}, Log: testr.New(t)}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := m.Run(ctx); err != nil {
					t.Error(err)
				}
			}()
			defer func() {
				cancel()
				<-done
			}()
			if err := m.Add(tc.peer, testCfg); err != nil {
				t.Fatal(err)
			}
			waitListening(t, tc.local)
			c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.peer, 49999)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.local, Port)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			setHops := func(h int) error {
				if tc.peer.Is4() {
					return ipv4.NewConn(c).SetTTL(h)
				}
				return ipv6.NewConn(c).SetHopLimit(h)
			}
			down := Packet{State: Down, DetectMult: 3, MyDisc: 77, DesiredMinTx: time.Second, RequiredMinRx: time.Second}
			for _, hops := range []int{254, 64, 1} {
				if err := setHops(hops); err != nil {
					t.Fatal(err)
				}
				for range 5 {
					if _, err := c.Write(down.Marshal()); err != nil {
						t.Fatal(err)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			time.Sleep(100 * time.Millisecond)
			if st, _ := m.State(tc.peer); st != Down {
				t.Fatalf("after packets with hop limits 254, 64 and 1 the session is %s, want Down (dropped)", st)
			}
			if err := setHops(TTL); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(down.Marshal()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, m, tc.peer, Init, 2*time.Second)
		})
	}
}

// waitListening waits until a manager's listener holds local's port 3784.
// It reads the namespace's socket tables (/proc/net/udp, /proc/net/udp6)
// rather than probing with a bind of its own: a probe holds the port for a
// moment, and a manager that listens in that moment finds it taken and
// runs without the family (2 of 40 runs failed so).
func waitListening(t *testing.T, local netip.Addr) {
	t.Helper()
	table := "/proc/net/udp6"
	if local.Is4() {
		table = "/proc/net/udp"
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(table)
		if err != nil {
			t.Fatal(err)
		}
		if holdsPort(string(b), Port) {
			return
		}
	}
	t.Fatalf("nothing listens on %s", netip.AddrPortFrom(local, Port))
}

// holdsPort says whether a /proc/net/udp{,6} table has a socket bound to
// port (the local_address column is ADDR:PORT, the port in hex).
func holdsPort(table string, port int) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasSuffix(f[1], suffix) {
			return true
		}
	}
	return false
}
