// Package forwarder_test runs the real portico-forwarder binary in static
// mode (fixed address and peers, no apiserver) on three node namespaces of
// one bridge, and attacks and breaks it from outside: a hostile sender on
// the node network, a link that goes down and up, a forwarder started while
// its link is down. What each node announces is read from its /metrics, so
// these tests also prove the documented series.
//
// PORTICO_FORWARDER_BIN runs them against another build (e.g. an older
// commit's, to see them fail there). PORTICO_FORWARDER_PREVIOUS_BIN, the
// previous release's binary, enables TestRollingUpgrade (a mixed cluster).
package forwarder_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/portico-lb/portico/e2e/netlab"
)

const (
	heartbeatPort = 7473
	metricsAddr   = "127.0.0.1:7474"
	probeAddr     = "127.0.0.1:7475"
)

var vip = netip.MustParseAddr("10.66.0.200")

type node struct {
	host *netlab.Host
	// bin, when set, is the binary this node runs instead of the world's.
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

type world struct {
	t     *testing.T
	lab   *netlab.Lab
	bin   string
	key   string
	nodes []*node
	// arp is a client's ARP socket on the node network.
	arp *arp.Client
}

func setup(t *testing.T) *world {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	w := &world{t: t, bin: os.Getenv("PORTICO_FORWARDER_BIN")}
	if w.bin == "" {
		w.bin = filepath.Join(t.TempDir(), "portico-forwarder")
		if out, err := exec.Command("go", "build", "-o", w.bin, "../../cmd/portico-forwarder").CombinedOutput(); err != nil {
			t.Fatalf("building forwarder: %v\n%s", err, out)
		}
	}
	w.key = filepath.Join(t.TempDir(), "heartbeat.key")
	if err := os.WriteFile(w.key, []byte(rand.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab, err := netlab.New()
	if err != nil {
		t.Fatal(err)
	}
	w.lab = lab
	t.Cleanup(lab.Close)
	for i := range 3 {
		h, err := lab.AddHost(fmt.Sprintf("n%d", i+1), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 66, 0, byte(i + 1)}), 24), netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		w.nodes = append(w.nodes, &node{host: h})
	}
	cl, err := lab.AddHost("cl", netip.MustParsePrefix("10.66.0.100/24"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(func() error {
		ifi, err := net.InterfaceByName(cl.Link)
		if err != nil {
			return err
		}
		w.arp, err = arp.Dial(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.arp.Close() })
	for _, n := range w.nodes {
		w.start(n)
	}
	t.Cleanup(func() {
		for _, n := range w.nodes {
			w.stop(n)
		}
	})
	t.Cleanup(w.dumpLogs)
	return w
}

// supports reports whether the binary knows flag (an older build may not).
func (w *world) supports(flag string) bool { return supports(w.bin, flag) }

func supports(bin, flag string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return strings.Contains(string(out), flag)
}

func (w *world) start(n *node) {
	args := []string{"--node-name", n.host.Name, "--interface", n.host.Link, "--static-address", vip.String(), "--zap-log-level", "1"}
	for _, o := range w.nodes {
		if o != n {
			args = append(args, "--peer", o.host.Name+"="+o.host.IPv4.Addr().String())
		}
	}
	bin := w.bin
	if n.bin != "" {
		bin = n.bin
	}
	if supports(bin, "--heartbeat-key-file") {
		args = append(args, "--heartbeat-key-file", w.key, "--heartbeat-address", n.host.IPv4.Addr().String(),
			"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", probeAddr)
	}
	if n.log == "" {
		n.log = filepath.Join(w.t.TempDir(), n.host.Name+".log")
	}
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	n.cmd = n.host.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func(c *exec.Cmd, d chan struct{}) { _ = c.Wait(); f.Close(); close(d) }(n.cmd, n.done)
}

func (w *world) stop(n *node) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
}

// exited fails the test when a forwarder has exited.
func (w *world) exited() {
	w.t.Helper()
	for _, n := range w.nodes {
		select {
		case <-n.done:
			w.t.Fatalf("forwarder %s exited: %s", n.host.Name, n.cmd.ProcessState)
		default:
		}
	}
}

func (w *world) dumpLogs() {
	if !w.t.Failed() {
		return
	}
	for _, n := range w.nodes {
		b, _ := os.ReadFile(n.log)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		w.t.Logf("forwarder %s log tail:\n%s", n.host.Name, strings.Join(lines, "\n"))
	}
}

// get fetches url's path from inside the node's namespace.
func get(n *node, addr, path string) (int, string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
		err = n.host.Do(func() error {
			d := net.Dialer{Timeout: 200 * time.Millisecond}
			c, err = d.DialContext(ctx, network, a)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: time.Second}
	resp, err := cl.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics scrapes the node: series (name{labels} as exposed) -> value.
func metrics(n *node) (map[string]float64, error) {
	code, body, err := get(n, metricsAddr, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, nil
}

func (w *world) metric(n *node, series string) float64 {
	w.t.Helper()
	m, err := metrics(n)
	if err != nil {
		w.t.Fatalf("scraping %s: %v", n.host.Name, err)
	}
	v, ok := m[series]
	if !ok {
		w.t.Fatalf("%s exposes no %s", n.host.Name, series)
	}
	return v
}

// announcers are the nodes that answer ARP for vip, as a client on the
// network sees them: every reply to a who-has within 50ms; without any, it
// asks up to four more times (a loaded machine may answer late).
func (w *world) announcers() []*node {
	w.t.Helper()
	seen := map[string]bool{}
	for try := 0; try < 5 && len(seen) == 0; try++ {
		if err := w.arp.Request(vip); err != nil {
			w.t.Fatal(err)
		}
		_ = w.arp.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			p, _, err := w.arp.Read()
			if err != nil {
				break
			}
			if p.Operation == arp.OperationReply && p.SenderIP == vip {
				seen[p.SenderHardwareAddr.String()] = true
			}
		}
	}
	var out []*node
	for _, n := range w.nodes {
		if seen[n.host.MAC.String()] {
			out = append(out, n)
		}
	}
	return out
}

// claimed are the nodes whose forwarder says, on /metrics, it announces vip.
func (w *world) claimed() []*node {
	w.t.Helper()
	var out []*node
	for _, n := range w.nodes {
		if m, err := metrics(n); err == nil && m["portico_forwarder_addresses_announced"] == 1 {
			out = append(out, n)
		}
	}
	return out
}

func names(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.host.Name)
	}
	return out
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if f() {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("not within %s: %s", d, what)
	return 0
}

func (w *world) holder() *node {
	w.t.Helper()
	var h []*node
	eventually(w.t, 15*time.Second, "exactly one announcer", func() bool { h = w.announcers(); return len(h) == 1 })
	return h[0]
}

// captured is one heartbeat datagram seen on the bridge.
type captured struct {
	src, dst netip.Addr
	payload  []byte
}

// capture records the heartbeats node n sends, from the bridge side of its
// cable, for d.
func (w *world) capture(n *node, idx int, d time.Duration) []captured {
	w.t.Helper()
	lan := &netlab.Host{NS: "pl-" + w.lab.ID() + "-lan"}
	port := fmt.Sprintf("pl%sb%d", w.lab.ID(), idx)
	var c *packet.Conn
	err := lan.Do(func() error {
		ifi, err := net.InterfaceByName(port)
		if err != nil {
			return err
		}
		// ETH_P_ALL: the bridge takes frames before protocol handlers see them.
		c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var out []captured
	buf := make([]byte, 70000)
	for {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			return out
		}
		f := buf[:k]
		if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP || f[14+9] != unix.IPPROTO_UDP {
			continue
		}
		ihl := int(f[14]&0xf) * 4
		udp := f[14+ihl:]
		if binary.BigEndian.Uint16(udp[2:4]) != heartbeatPort {
			continue
		}
		src, _ := netip.AddrFromSlice(f[14+12 : 14+16])
		dst, _ := netip.AddrFromSlice(f[14+16 : 14+20])
		out = append(out, captured{src: src, dst: dst, payload: append([]byte(nil), udp[8:]...)})
	}
}

// attacker is a host on the node network that sends UDP with any source
// address (IP_TRANSPARENT), as a pod can with its node's address on a CNI
// that masquerades pod-to-node traffic.
type attacker struct {
	host *netlab.Host
	fds  map[netip.Addr]int
}

func (a *attacker) send(src, dst netip.Addr, payload []byte) error {
	fd, ok := a.fds[src]
	if !ok {
		err := a.host.Do(func() (err error) {
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); err != nil {
				return err
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1); err != nil {
				return err
			}
			return unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()})
		})
		if err != nil {
			return err
		}
		a.fds[src] = fd
	}
	return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: dst.As4(), Port: heartbeatPort})
}

func (a *attacker) close() {
	for _, fd := range a.fds {
		unix.Close(fd)
	}
}

// v1 is the unsigned heartbeat every forwarder accepted before keys.
func v1(node string, seq int, leaving bool, claims ...netip.Addr) []byte {
	b, _ := json.Marshal(map[string]any{"v": 1, "node": node, "inc": 1, "seq": seq, "leaving": leaving, "claims": claims})
	return b
}

// wrongKey is a well-formed heartbeat signed with a key the cluster does not
// have.
func wrongKey(node string, seq int, leaving bool, claims ...netip.Addr) []byte {
	body, _ := json.Marshal(map[string]any{"v": 2, "node": node, "inc": 1, "seq": seq, "leaving": leaving, "claims": claims})
	msg := append([]byte("PHB2"), body...)
	h := hmac.New(sha256.New, []byte("not-the-cluster-key-0123456789"))
	h.Write(msg)
	return h.Sum(msg)
}

// TestHostileSender: a host on the node network forges "leaving" for the
// announcer and for every node, claims for the others, replays captured
// genuine heartbeats, floods oversized and wrong-key datagrams. Through all
// of it exactly one node announces the address (never two, never none), it
// is the same node, and the rejected counters rise by reason. Before keys,
// the forged leave alone made a second node announce while the first kept
// answering, and leaves for everyone left no node with quorum.
func TestHostileSender(t *testing.T) {
	w := setup(t)
	ev, err := w.lab.AddHost("ev", netip.MustParsePrefix("10.66.0.99/24"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	evil := &attacker{host: ev, fds: map[netip.Addr]int{}}
	defer evil.close()
	holder := w.holder()
	idx := 0
	for i, n := range w.nodes {
		if n == holder {
			idx = i
		}
	}
	recorded := w.capture(holder, idx, 500*time.Millisecond)
	if len(recorded) == 0 {
		t.Fatal("captured no heartbeat of the holder")
	}
	t.Logf("%s announces %s; captured %d of its heartbeats", holder.host.Name, vip, len(recorded))
	rejectedBefore := map[string]float64{}
	bystander := w.nodes[(idx+1)%3]
	if w.supports("--heartbeat-key-file") {
		for _, r := range []string{"malformed", "unauthenticated", "replayed", "oversized"} {
			rejectedBefore[r] = w.metric(bystander, `portico_forwarder_heartbeats_rejected_total{reason="`+r+`"}`)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		big := make([]byte, 65000)
		var many []netip.Addr
		for i := range 4000 {
			many = append(many, netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}))
		}
		flood := wrongKey(holder.host.Name, 1, false, many...)
		for seq := 1_000_000; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, to := range w.nodes {
				dst := to.host.IPv4.Addr()
				for _, from := range w.nodes {
					if from == to {
						continue
					}
					src := from.host.IPv4.Addr()
					// The announcer "leaves"; every node "leaves"; the
					// others claim the address.
					_ = evil.send(src, dst, v1(from.host.Name, seq, true))
					_ = evil.send(src, dst, wrongKey(from.host.Name, seq, true))
					if from != holder {
						_ = evil.send(src, dst, v1(from.host.Name, seq, false, vip))
						_ = evil.send(src, dst, wrongKey(from.host.Name, seq, false, vip))
					}
				}
			}
			for _, r := range recorded {
				_ = evil.send(r.src, r.dst, r.payload)
			}
			for range 20 {
				_ = evil.send(holder.host.IPv4.Addr(), bystander.host.IPv4.Addr(), flood)
			}
			_ = evil.send(holder.host.IPv4.Addr(), bystander.host.IPv4.Addr(), big)
			time.Sleep(time.Millisecond)
		}
	}()
	deadline := time.Now().Add(3 * time.Second)
	samples := 0
	for time.Now().Before(deadline) {
		an := w.announcers()
		if len(an) != 1 || an[0] != holder {
			close(stop)
			wg.Wait()
			t.Fatalf("under attack %s is announced by %v, want only %s", vip, names(an), holder.host.Name)
		}
		samples++
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	w.exited()
	t.Logf("%d samples under attack, always one announcer", samples)
	for _, r := range []string{"malformed", "unauthenticated", "replayed", "oversized"} {
		if got := w.metric(bystander, `portico_forwarder_heartbeats_rejected_total{reason="`+r+`"}`); got <= rejectedBefore[r] {
			t.Errorf("%s: rejected{reason=%q} stayed at %v", bystander.host.Name, r, got)
		}
	}
	if q := w.metric(bystander, "portico_forwarder_quorum"); q != 1 {
		t.Errorf("%s lost quorum under attack", bystander.host.Name)
	}
}

// linkDown sets the node's own interface administratively down or up, the
// state in which the forwarder used to exit ("reading NDP: network is
// down").
func linkSet(t *testing.T, n *node, up bool) {
	t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	if _, err := n.host.IP("link", "set", n.host.Link, state); err != nil {
		t.Fatal(err)
	}
}

// rejoined reports whether every other node hears n again, and n has quorum.
func (w *world) rejoined(n *node) bool {
	for _, o := range w.nodes {
		m, err := metrics(o)
		if err != nil {
			return false
		}
		if o == n && m["portico_forwarder_quorum"] != 1 {
			return false
		}
		if o != n && m["portico_forwarder_peers_alive"] != 3 {
			return false
		}
	}
	return true
}

// TestLinkFlap: the announcing node's link goes down for 5s and comes back.
// The forwarder never exits; another node takes the address over; the
// flapped node is not ready (saying why) while down, and within 500ms of
// the link returning its peers hear it again and it is ready. The metrics
// tell the failover: one takeover on the new holder, one release on the old.
func TestLinkFlap(t *testing.T) {
	w := setup(t)
	holder := w.holder()
	// Counters before the flap; read leniently, so that a build without
	// metrics fails below for what it does with the link, not here.
	takeovers := map[*node]float64{}
	for _, n := range w.nodes {
		m, _ := metrics(n)
		takeovers[n] = m["portico_forwarder_takeovers_total"]
	}
	m, _ := metrics(holder)
	releases := m["portico_forwarder_releases_total"]

	linkSet(t, holder, false)
	var next *node
	eventually(t, 2*time.Second, "another node takes over", func() bool {
		w.exited()
		an := w.announcers()
		for _, n := range an {
			if n == holder {
				return false
			}
		}
		if len(an) == 1 {
			next = an[0]
			return true
		}
		return false
	})
	downUntil := time.Now().Add(5 * time.Second)
	sawNotReady := false
	for time.Now().Before(downUntil) {
		w.exited()
		if code, body, err := get(holder, probeAddr, "/readyz"); err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "interface") {
			sawNotReady = true
		}
		if an := w.announcers(); len(an) != 1 || an[0] != next {
			t.Fatalf("link down: announced by %v, want only %s", names(an), next.host.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawNotReady {
		t.Error("the node with its link down never reported not ready because of its interface")
	}
	if up := w.metric(holder, "portico_forwarder_interface_up"); up != 0 {
		t.Errorf("interface_up %v while the link is down", up)
	}

	linkSet(t, holder, true)
	took := eventually(t, 3*time.Second, "the flapped node takes part again", func() bool { return w.rejoined(holder) })
	t.Logf("the node took part again %s after its link returned", took)
	if took > 500*time.Millisecond {
		t.Errorf("took %s to take part again, want <= 500ms", took)
	}
	eventually(t, 500*time.Millisecond, "the flapped node is ready", func() bool {
		code, _, err := get(holder, probeAddr, "/readyz")
		return err == nil && code == http.StatusOK
	})
	w.exited()
	// Stickiness: the address stays where it went.
	time.Sleep(500 * time.Millisecond)
	if an := w.announcers(); len(an) != 1 || an[0] != next {
		t.Fatalf("after the flap: announced by %v, want only %s", names(an), next.host.Name)
	}
	if c := w.claimed(); len(c) != 1 || c[0] != next {
		t.Errorf("/metrics says %v announce, want only %s", names(c), next.host.Name)
	}
	if d := w.metric(next, "portico_forwarder_takeovers_total") - takeovers[next]; d != 1 {
		t.Errorf("%s takeovers rose by %v, want 1", next.host.Name, d)
	}
	if d := w.metric(holder, "portico_forwarder_releases_total") - releases; d != 1 {
		t.Errorf("%s releases rose by %v, want 1", holder.host.Name, d)
	}
	for _, n := range w.nodes {
		if w.metric(n, "portico_forwarder_heartbeats_sent_total") == 0 || w.metric(n, "portico_forwarder_heartbeats_received_total") == 0 {
			t.Errorf("%s sent or received no heartbeat", n.host.Name)
		}
		if p := w.metric(n, "portico_forwarder_peers"); p != 3 {
			t.Errorf("%s peers %v, want 3", n.host.Name, p)
		}
		// Round trips to peers over the lab's veth bridge: measured,
		// above zero and far below the quorum timeout.
		count, sum := w.metric(n, "portico_forwarder_peer_rtt_seconds_count"), w.metric(n, "portico_forwarder_peer_rtt_seconds_sum")
		if count == 0 || sum <= 0 || sum/count > 0.05 {
			t.Errorf("%s measured %v heartbeat round trips averaging %.2f ms, want some, above 0 and below 50 ms", n.host.Name, count, 1000*sum/count)
		} else {
			t.Logf("%s: %v heartbeat round trips averaging %.3f ms", n.host.Name, count, 1000*sum/count)
		}
	}
	if d := w.metric(holder, "portico_forwarder_interface_down_total"); d < 1 {
		t.Errorf("interface_down_total %v after a flap", d)
	}
}

// TestStartWithLinkDown: a forwarder started while its link is down waits
// (not ready, saying why) instead of exiting, and takes part within 500ms of
// the link coming up.
func TestStartWithLinkDown(t *testing.T) {
	w := setup(t)
	w.holder()
	n := w.nodes[2]
	w.stop(n)
	linkSet(t, n, false)
	w.start(n)
	time.Sleep(2 * time.Second)
	w.exited()
	code, body, err := get(n, probeAddr, "/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "interface") {
		t.Fatalf("readyz with the link down: %d %q %v, want 503 naming the interface", code, body, err)
	}
	t.Logf("readyz: %s", strings.TrimSpace(body))
	linkSet(t, n, true)
	took := eventually(t, 3*time.Second, "the node takes part", func() bool { return w.rejoined(n) })
	t.Logf("took part %s after its link came up", took)
	if took > 500*time.Millisecond {
		t.Errorf("took %s, want <= 500ms", took)
	}
	w.exited()
	if an := w.announcers(); len(an) != 1 {
		t.Fatalf("announced by %v, want one node", names(an))
	}
}

// TestRollingUpgrade: forwarders of the previous release
// (PORTICO_FORWARDER_PREVIOUS_BIN) and of this build, mixed as in a rolling
// upgrade, hear each other: every node has quorum and hears all three, none
// rejects a heartbeat as malformed, one node announces, and when it stops
// another takes over, across releases. The heartbeat echoes added for the
// round-trip time are a field the previous release ignores; this build's
// nodes measure round trips with each other.
func TestRollingUpgrade(t *testing.T) {
	prev := os.Getenv("PORTICO_FORWARDER_PREVIOUS_BIN")
	if prev == "" {
		t.Skip("set PORTICO_FORWARDER_PREVIOUS_BIN to the previous release's portico-forwarder to test a mixed cluster")
	}
	w := setup(t)
	allHeard := func() bool {
		for _, n := range w.nodes {
			if m, err := metrics(n); err != nil || m["portico_forwarder_quorum"] != 1 || m["portico_forwarder_peers_alive"] != 3 {
				return false
			}
		}
		return true
	}
	// The node that takes the address over from the holder runs the
	// previous release, so the address moves new -> old and back.
	first := w.holder()
	w.stop(first)
	old := w.holder()
	w.start(first)
	eventually(t, 5*time.Second, first.host.Name+" back: every node has quorum and hears all three", allHeard)
	w.stop(old)
	old.bin = prev
	w.start(old)
	t.Logf("%s runs the previous release", old.host.Name)
	eventually(t, 5*time.Second, "every node has quorum and hears all three", allHeard)
	w.holder()
	time.Sleep(time.Second)
	for _, n := range w.nodes {
		if r := w.metric(n, `portico_forwarder_heartbeats_rejected_total{reason="malformed"}`); r != 0 {
			t.Errorf("%s rejected %v heartbeats as malformed", n.host.Name, r)
		}
		if n == old {
			continue
		}
		if c := w.metric(n, "portico_forwarder_peer_rtt_seconds_count"); c == 0 {
			t.Errorf("%s measured no round trip", n.host.Name)
		}
	}
	// Each node in turn stops and comes back: the address moves between
	// releases (to the old node when the holder stops, back when it
	// returns) and exactly one node announces.
	for _, n := range w.nodes {
		before := w.holder()
		w.stop(n)
		eventually(t, 5*time.Second, "one running node announces after "+n.host.Name+" stopped", func() bool {
			h := w.announcers()
			return len(h) == 1 && h[0] != n
		})
		t.Logf("%s (holder %s) stopped: %s announces", n.host.Name, before.host.Name, names(w.announcers()))
		w.start(n)
		eventually(t, 5*time.Second, n.host.Name+" back: every node has quorum and hears all three", allHeard)
	}
	w.exited()
}
