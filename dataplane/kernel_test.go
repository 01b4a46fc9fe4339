package dataplane_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/e2e/netlab"
)

// The kernel tests build, per test, a LAN (bridge namespace) with a node
// and clients on it, and pods behind the node, all in fresh network
// namespaces, and program a real nftables table in the node namespace.

const (
	nodeName = "node-a"
	srvPort  = 8080
)

var (
	vip       = netip.MustParseAddr("203.0.113.10")
	nodeLANIP = netip.MustParseAddr("10.100.0.1")
)

type testbed struct {
	lab     *netlab.Lab
	node    *netlab.Host
	clients []*netlab.Host
	pods    []*dptest.Pod
	dp      *dataplane.Dataplane
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel dataplane tests need root (network namespaces and nftables)")
	}
	if _, err := netlab.Run("nft", "--version"); err != nil {
		t.Skip("kernel dataplane tests need the nft command (apt-get install nftables)")
	}
}

func newTestbed(t *testing.T, clients, pods int, opts dataplane.Options) *testbed {
	t.Helper()
	requireRoot(t)
	lab, err := netlab.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	tb := &testbed{lab: lab}
	if tb.node, err = lab.AddHost("node", netip.PrefixFrom(nodeLANIP, 24), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if err := dptest.EnableForwarding(tb.node); err != nil {
		t.Fatal(err)
	}
	for i := range clients {
		c, err := lab.AddHost(fmt.Sprintf("client%d", i), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100, 0, byte(10 + i)}), 24), netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		for _, dst := range []string{"203.0.113.0/24", "10.200.0.0/16"} {
			if _, err := c.IP("route", "add", dst, "via", nodeLANIP.String()); err != nil {
				t.Fatal(err)
			}
		}
		tb.clients = append(tb.clients, c)
	}
	for i := 1; i <= pods; i++ {
		p, err := dptest.AddPod(lab.ID(), tb.node, i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Remove)
		srv, err := dptest.Serve(p.Host, p.Name, srvPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		tb.pods = append(tb.pods, p)
	}
	if opts.NodeName == "" {
		opts.NodeName = nodeName
	}
	tb.do(t, func() error {
		var err error
		tb.dp, err = dataplane.New(opts)
		return err
	})
	return tb
}

// do runs fn in the node namespace: nft, which knftables runs, inherits it.
func (tb *testbed) do(t *testing.T, fn func() error) {
	t.Helper()
	if err := tb.node.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func (tb *testbed) sync(t *testing.T, svcs ...dataplane.Service) {
	t.Helper()
	tb.do(t, func() error { return tb.dp.Sync(context.Background(), svcs) })
}

func (tb *testbed) update(t *testing.T, svc dataplane.Service) {
	t.Helper()
	tb.do(t, func() error { return tb.dp.Update(context.Background(), svc) })
}

func (tb *testbed) ruleset(t *testing.T) string {
	t.Helper()
	out, err := netlab.Run("ip", "netns", "exec", tb.node.NS, "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// endpoint makes a ready endpoint for pod on node.
func endpoint(p *dptest.Pod, node string) dataplane.Endpoint {
	return dataplane.Endpoint{Addr: p.Addr, Port: srvPort, NodeName: node, Ready: true}
}

func webService(eps ...dataplane.Endpoint) dataplane.Service {
	return dataplane.Service{
		Key:             dataplane.ServiceKey{Namespace: "default", Name: "web"},
		LoadBalancerIPs: []netip.Addr{vip},
		TrafficPolicy:   dataplane.Cluster,
		Ports: []dataplane.Port{
			{Name: "http", Protocol: dataplane.TCP, Port: 80, NodePort: 30080, Endpoints: eps},
			{Name: "dns", Protocol: dataplane.UDP, Port: 53, NodePort: 30053, Endpoints: eps},
		},
	}
}

// askMany opens n TCP connections from client to addr and counts replies
// per server; every connection must succeed.
func askMany(t *testing.T, client *netlab.Host, addr netip.AddrPort, n int) (map[string]int, map[netip.Addr]int) {
	t.Helper()
	servers, clients := map[string]int{}, map[netip.Addr]int{}
	for range n {
		r, err := dptest.AskTCP(client, addr, 2*time.Second)
		if err != nil {
			t.Fatalf("connecting to %s: %v", addr, err)
		}
		servers[r.Server]++
		clients[r.Client]++
	}
	return servers, clients
}

func TestKernelClusterSpreadsAndMasquerades(t *testing.T) {
	tb := newTestbed(t, 1, 2, dataplane.Options{})
	tb.sync(t, webService(endpoint(tb.pods[0], nodeName), endpoint(tb.pods[1], "node-b")))

	servers, clients := askMany(t, tb.clients[0], netip.AddrPortFrom(vip, 80), 40)
	if servers["pod1"] == 0 || servers["pod2"] == 0 || servers["pod1"]+servers["pod2"] != 40 {
		t.Errorf("connections per pod = %v, want both pods used", servers)
	}
	for c := range clients {
		if c == tb.clients[0].IPv4.Addr() {
			t.Errorf("pod saw the client address %s under policy Cluster, want the node's (masquerade)", c)
		}
	}

	seen := map[string]bool{}
	for range 20 {
		r, err := dptest.AskUDP(tb.clients[0], netip.AddrPortFrom(vip, 53), 2*time.Second)
		if err != nil {
			t.Fatalf("UDP through %s: %v", vip, err)
		}
		seen[r.Server] = true
	}
	if !seen["pod1"] || !seen["pod2"] {
		t.Errorf("UDP reached %v, want both pods", seen)
	}
}

func TestKernelRemovedEndpointGetsNoNewConnections(t *testing.T) {
	tb := newTestbed(t, 1, 2, dataplane.Options{ConntrackCleaner: dataplane.NewConntrackCleaner()})
	svc := webService(endpoint(tb.pods[0], nodeName), endpoint(tb.pods[1], nodeName))
	tb.sync(t, svc)
	if servers, _ := askMany(t, tb.clients[0], netip.AddrPortFrom(vip, 80), 20); servers["pod2"] == 0 {
		t.Fatalf("pod2 got no connections before removal: %v", servers)
	}
	// One UDP flow that reached pod2 stays in conntrack unless flushed.
	udpClient := tb.clients[0]

	svc = webService(endpoint(tb.pods[0], nodeName), dataplane.Endpoint{Addr: tb.pods[1].Addr, Port: srvPort, NodeName: nodeName, Ready: false})
	tb.update(t, svc)
	servers, _ := askMany(t, tb.clients[0], netip.AddrPortFrom(vip, 80), 30)
	if servers["pod2"] != 0 || servers["pod1"] != 30 {
		t.Errorf("after removing pod2: connections per pod = %v, want all 30 on pod1", servers)
	}
	for range 10 {
		r, err := dptest.AskUDP(udpClient, netip.AddrPortFrom(vip, 53), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Server != "pod1" {
			t.Errorf("UDP after removal reached %s, want pod1", r.Server)
		}
	}
}

func TestKernelLocalPreservesClientIP(t *testing.T) {
	tb := newTestbed(t, 1, 2, dataplane.Options{})
	svc := webService(endpoint(tb.pods[0], nodeName), endpoint(tb.pods[1], "node-b"))
	svc.TrafficPolicy = dataplane.Local
	tb.sync(t, svc)

	servers, clients := askMany(t, tb.clients[0], netip.AddrPortFrom(vip, 80), 20)
	if servers["pod1"] != 20 {
		t.Errorf("connections per pod = %v, want all on the local pod1", servers)
	}
	want := tb.clients[0].IPv4.Addr()
	if clients[want] != 20 {
		t.Errorf("client addresses seen by the pod = %v, want %s every time", clients, want)
	}
}

func TestKernelSourceRangesBlockOtherClients(t *testing.T) {
	tb := newTestbed(t, 2, 1, dataplane.Options{})
	svc := webService(endpoint(tb.pods[0], nodeName))
	svc.SourceRanges = []netip.Prefix{netip.PrefixFrom(tb.clients[0].IPv4.Addr(), 32)}
	tb.sync(t, svc)

	if _, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(vip, 80), 2*time.Second); err != nil {
		t.Errorf("allowed client: %v", err)
	}
	if r, err := dptest.AskTCP(tb.clients[1], netip.AddrPortFrom(vip, 80), 500*time.Millisecond); err == nil {
		t.Errorf("client outside the source ranges got through to %s", r.Server)
	}
	if r, err := dptest.AskUDP(tb.clients[1], netip.AddrPortFrom(vip, 53), 500*time.Millisecond); err == nil {
		t.Errorf("client outside the source ranges got a UDP reply from %s", r.Server)
	}
	// The direct path to the pod is not the Service's business.
	if _, err := dptest.AskTCP(tb.clients[1], netip.AddrPortFrom(tb.pods[0].Addr, srvPort), 2*time.Second); err != nil {
		t.Errorf("direct path from the other client: %v", err)
	}
}

func TestKernelSessionAffinity(t *testing.T) {
	tb := newTestbed(t, 1, 3, dataplane.Options{})
	svc := webService(endpoint(tb.pods[0], nodeName), endpoint(tb.pods[1], nodeName), endpoint(tb.pods[2], nodeName))
	svc.AffinityTimeout = 30 * time.Second
	tb.sync(t, svc)
	servers, _ := askMany(t, tb.clients[0], netip.AddrPortFrom(vip, 80), 20)
	if len(servers) != 1 {
		t.Errorf("with ClientIP affinity one client reached %v, want a single pod", servers)
	}
}

func TestKernelNoEndpointsRejects(t *testing.T) {
	tb := newTestbed(t, 1, 1, dataplane.Options{})
	tb.sync(t, webService())
	start := time.Now()
	_, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(vip, 80), 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connecting to a service without endpoints: err = %v, want connection refused", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("rejection took %v, want an immediate reset", time.Since(start))
	}
}

func TestKernelNodePortWhenKubeProxyFree(t *testing.T) {
	tb := newTestbed(t, 1, 1, dataplane.Options{KubeProxyFree: true})
	tb.sync(t, webService(endpoint(tb.pods[0], nodeName)))
	r, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(nodeLANIP, 30080), 2*time.Second)
	if err != nil || r.Server != "pod1" {
		t.Errorf("NodePort 30080: reply %v, err %v; want pod1", r, err)
	}
	ur, err := dptest.AskUDP(tb.clients[0], netip.AddrPortFrom(nodeLANIP, 30053), 2*time.Second)
	if err != nil || ur.Server != "pod1" {
		t.Errorf("UDP NodePort 30053: reply %v, err %v; want pod1", ur, err)
	}
}

func TestKernelNodePortOffByDefault(t *testing.T) {
	tb := newTestbed(t, 1, 1, dataplane.Options{})
	tb.sync(t, webService(endpoint(tb.pods[0], nodeName)))
	if r, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(nodeLANIP, 30080), 500*time.Millisecond); err == nil {
		t.Errorf("NodePort answered by %s without KubeProxyFree", r.Server)
	}
}

func TestKernelCleanupLeavesNothing(t *testing.T) {
	tb := newTestbed(t, 1, 2, dataplane.Options{KubeProxyFree: true})
	svc := webService(endpoint(tb.pods[0], nodeName), endpoint(tb.pods[1], nodeName))
	svc.AffinityTimeout = time.Minute
	svc.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.100.0.0/24")}
	tb.sync(t, svc)
	if rs := tb.ruleset(t); !strings.Contains(rs, "table inet portico") {
		t.Fatalf("table missing after Sync:\n%s", rs)
	}
	tb.do(t, func() error { return tb.dp.Cleanup(context.Background()) })
	if rs := tb.ruleset(t); strings.Contains(rs, "portico") {
		t.Errorf("after Cleanup the ruleset still mentions portico:\n%s", rs)
	}
	// Cleanup of an absent table is fine.
	tb.do(t, func() error { return tb.dp.Cleanup(context.Background()) })
	if _, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(vip, 80), 300*time.Millisecond); err == nil {
		t.Error("the address still forwards after Cleanup")
	}
}

func TestKernelResyncReplacesState(t *testing.T) {
	tb := newTestbed(t, 1, 2, dataplane.Options{})
	a := webService(endpoint(tb.pods[0], nodeName))
	b := webService(endpoint(tb.pods[1], nodeName))
	b.Key.Name = "other"
	b.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.11")}
	tb.sync(t, a, b)
	// A restarted forwarder: a new Dataplane that knows only a.
	tb.do(t, func() error {
		dp, err := dataplane.New(dataplane.Options{NodeName: nodeName})
		if err != nil {
			return err
		}
		return dp.Sync(context.Background(), []dataplane.Service{a})
	})
	if rs := tb.ruleset(t); strings.Contains(rs, "default/other") {
		t.Errorf("stale service left after resync:\n%s", rs)
	}
	if _, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(vip, 80), 2*time.Second); err != nil {
		t.Errorf("kept service after resync: %v", err)
	}
}

func TestKernelLocalHairpin(t *testing.T) {
	tb := newTestbed(t, 1, 1, dataplane.Options{})
	svc := webService(endpoint(tb.pods[0], nodeName))
	svc.TrafficPolicy = dataplane.Local
	tb.sync(t, svc)
	// The only endpoint reaches its own Service through the address: the
	// reply must come back through the node's reverse NAT.
	r, err := dptest.AskTCP(tb.pods[0].Host, netip.AddrPortFrom(vip, 80), 2*time.Second)
	if err != nil {
		t.Fatalf("hairpin connection: %v", err)
	}
	if r.Server != "pod1" || r.Client == tb.pods[0].Addr {
		t.Errorf("hairpin reply %+v, want pod1 seeing the node's address, not its own", r)
	}
}

func TestKernelNodePortWithoutEndpointsRejects(t *testing.T) {
	tb := newTestbed(t, 1, 1, dataplane.Options{KubeProxyFree: true})
	// A process on the node that happens to listen on the port must not
	// answer in the Service's place.
	srv, err := dptest.Serve(tb.node, "node", 30080)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	tb.sync(t, webService())
	_, err = dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(nodeLANIP, 30080), 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("NodePort without endpoints: err = %v, want connection refused", err)
	}
}

// TestKernelEstablishedSurvivesRemovalAndRestart keeps one connection open
// through the address while its endpoint stops being ready and the
// forwarder restarts (a new Dataplane resyncs): conntrack keeps it going,
// and new connections avoid the endpoint.
func TestKernelEstablishedSurvivesRemovalAndRestart(t *testing.T) {
	tb := newTestbed(t, 1, 2, dataplane.Options{})
	for _, p := range tb.pods {
		ln, err := dptest.ServeEcho(p.Host, p.Name, 9000)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
	}
	svc := dataplane.Service{
		Key:             dataplane.ServiceKey{Namespace: "default", Name: "echo"},
		LoadBalancerIPs: []netip.Addr{vip},
		TrafficPolicy:   dataplane.Cluster,
		Ports: []dataplane.Port{{Name: "echo", Protocol: dataplane.TCP, Port: 9000, Endpoints: []dataplane.Endpoint{
			{Addr: tb.pods[0].Addr, Port: 9000, NodeName: nodeName, Ready: true},
			{Addr: tb.pods[1].Addr, Port: 9000, NodeName: nodeName, Ready: true},
		}}},
	}
	tb.sync(t, svc)

	var conn net.Conn
	if err := tb.clients[0].Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip, 9000).String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	greeting, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.Fields(greeting)[0]
	idx := 0
	if pinned == "pod2" {
		idx = 1
	}

	// The endpoint stops being ready, and the forwarder restarts.
	svc.Ports[0].Endpoints[idx].Ready = false
	tb.update(t, svc)
	tb.do(t, func() error {
		dp, err := dataplane.New(dataplane.Options{NodeName: nodeName})
		if err != nil {
			return err
		}
		return dp.Sync(context.Background(), []dataplane.Service{svc})
	})

	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(conn, "still there\n"); err != nil {
		t.Fatal(err)
	}
	if echo, err := rd.ReadString('\n'); err != nil || echo != "still there\n" {
		t.Errorf("established connection to %s after removal and restart: %q, %v", pinned, echo, err)
	}
	for range 10 {
		r, err := dptest.AskTCP(tb.clients[0], netip.AddrPortFrom(vip, 9000), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Server == pinned {
			t.Errorf("a new connection went to %s, which is no longer ready", pinned)
		}
	}
}

// bytesOf reads the per-address byte counters in the node namespace.
func (tb *testbed) bytesOf(t *testing.T) dataplane.Bytes {
	t.Helper()
	var b dataplane.Bytes
	tb.do(t, func() error {
		var err error
		b, err = tb.dp.Bytes(context.Background())
		return err
	})
	return b
}

func TestKernelCountsBytesPerAddress(t *testing.T) {
	tb := newTestbed(t, 1, 1, dataplane.Options{})
	svc := webService(endpoint(tb.pods[0], nodeName))
	tb.sync(t, svc)
	before := tb.bytesOf(t)
	if before.Epoch == "" {
		t.Fatal("no counter epoch after the first sync")
	}
	askMany(t, tb.clients[0], netip.AddrPortFrom(vip, 80), 5)
	after := tb.bytesOf(t)
	if after.In[vip] <= before.In[vip] || after.Out[vip] <= before.Out[vip] {
		t.Fatalf("bytes to/from %s did not grow with 5 TCP connections: before %+v after %+v", vip, before, after)
	}
	// A TCP handshake, a request and an answer each way: at least 3
	// packets of 40 bytes or more per direction and connection.
	if got := after.In[vip] - before.In[vip]; got < 5*3*40 {
		t.Errorf("bytes in = %d, want at least %d for 5 connections", got, 5*3*40)
	}

	// A restarted forwarder (a new Dataplane over the same table) keeps
	// the counters and the epoch.
	tb.do(t, func() error {
		var err error
		tb.dp, err = dataplane.New(dataplane.Options{NodeName: nodeName})
		return err
	})
	tb.sync(t, svc)
	restarted := tb.bytesOf(t)
	if restarted.Epoch != after.Epoch || restarted.In[vip] < after.In[vip] {
		t.Errorf("after a forwarder restart: epoch %q bytes in %d, want epoch %q and at least %d", restarted.Epoch, restarted.In[vip], after.Epoch, after.In[vip])
	}

	// A re-created table resets the counters under a new epoch.
	tb.do(t, func() error { return tb.dp.Cleanup(context.Background()) })
	tb.sync(t, svc)
	recreated := tb.bytesOf(t)
	if recreated.Epoch == after.Epoch {
		t.Errorf("re-created table kept epoch %q; its counters restarted from zero", recreated.Epoch)
	}

	// An address no longer programmed has no counter.
	svc.LoadBalancerIPs = []netip.Addr{netip.MustParseAddr("203.0.113.11")}
	tb.update(t, svc)
	if b := tb.bytesOf(t); b.Has(vip) || !b.Has(svc.LoadBalancerIPs[0]) {
		t.Errorf("after moving the Service to %s: counters %+v", svc.LoadBalancerIPs[0], b)
	}
}
