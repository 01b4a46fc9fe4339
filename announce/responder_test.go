package announce

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/portico-lb/portico/e2e/netlab"
)

// lab builds a bridge with two nodes and a client; it needs root.
func lab(t *testing.T) (*netlab.Lab, []*netlab.Host, *netlab.Host) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	l, err := netlab.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	var nodes []*netlab.Host
	for i, name := range []string{"n1", "n2"} {
		h, err := l.AddHost(name, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(1 + i)}), 24),
			netip.MustParsePrefix("fd00:99::"+string(rune('1'+i))+"/64"))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, h)
	}
	client, err := l.AddHost("cl", netip.MustParsePrefix("10.99.0.100/24"), netip.MustParsePrefix("fd00:99::100/64"))
	if err != nil {
		t.Fatal(err)
	}
	return l, nodes, client
}

func startResponder(t *testing.T, h *netlab.Host) *Responder {
	t.Helper()
	var r *Responder
	if err := h.Do(func() (err error) { r, err = NewResponder(h.Link); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// poke makes the client's kernel resolve ip by sending it a datagram.
func poke(t *testing.T, client *netlab.Host, ip netip.Addr) {
	t.Helper()
	err := client.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitNeighbor(t *testing.T, client *netlab.Host, ip netip.Addr, mac net.HardwareAddr, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got string
	for time.Now().Before(deadline) {
		var err error
		if got, err = client.Neighbor(ip); err != nil {
			t.Fatal(err)
		}
		if got == mac.String() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("client resolves %s to %q, want %s", ip, got, mac)
}

func TestResponderAnswersAndTakesOver(t *testing.T) {
	_, nodes, client := lab(t)
	r1, r2 := startResponder(t, nodes[0]), startResponder(t, nodes[1])
	vip4, vip6 := netip.MustParseAddr("10.99.0.200"), netip.MustParseAddr("fd00:99::200")

	r1.Set([]netip.Addr{vip4, vip6})
	for _, vip := range []netip.Addr{vip4, vip6} {
		poke(t, client, vip)
		waitNeighbor(t, client, vip, nodes[0].MAC, 2*time.Second)
	}

	// Takeover: n2 announces; its gratuitous ARP and unsolicited NA must
	// repoint the client's existing entries without the client asking.
	r1.Set(nil)
	r2.Set([]netip.Addr{vip4, vip6})
	for _, vip := range []netip.Addr{vip4, vip6} {
		waitNeighbor(t, client, vip, nodes[1].MAC, time.Second)
	}
}

func TestResponderIgnoresOtherAddresses(t *testing.T) {
	_, nodes, client := lab(t)
	r1 := startResponder(t, nodes[0])
	r1.Set([]netip.Addr{netip.MustParseAddr("10.99.0.201")})
	other := netip.MustParseAddr("10.99.0.202")
	poke(t, client, other)
	time.Sleep(300 * time.Millisecond)
	if mac, err := client.Neighbor(other); err != nil || mac != "" {
		t.Fatalf("an address nobody announces resolved to %q (%v)", mac, err)
	}
}
