// Package bgp_test is the end-to-end test of BGP mode with a real router: a
// real apiserver, the operator with the local backend, three node namespaces
// running the real portico-forwarder, pods behind them, and FRR (zebra and
// bgpd from Debian's frr package) in a router namespace on the nodes'
// bridge. The client sits on another subnet behind the router, so its
// traffic reaches a Service's address only through the routes the router
// learned over BGP and installed in its kernel table.
package bgp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/e2e/frr"
	"github.com/portico-lb/portico/e2e/netlab"
)

const (
	class     = "lb.portico.dev/local"
	routerASN = 64512
	nodeASN   = 64513
	password  = "tor-s3cret"
	ns        = "web"
)

var (
	routerAddr  = netip.MustParseAddr("10.88.0.254")
	routerAddr6 = netip.MustParseAddr("fd88::fe")
)

// nodeAddr6 is node i's IPv6 address on the nodes' bridge.
func nodeAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x88, 15: byte(i + 1)})
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "portico-forwarder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/portico-forwarder").CombinedOutput(); err != nil {
		t.Fatalf("building forwarder: %v\n%s", err, out)
	}
	return bin
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", d, err)
}

type world struct {
	t       *testing.T
	c       *cluster.Cluster
	router  *frr.Router
	outside *netlab.Host
}

func setup(t *testing.T) *world {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and nftables")
	}
	if why := frr.Available(); why != "" {
		t.Skip(why)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	logs := t.TempDir()
	c, err := cluster.Start(cluster.Options{ForwarderBin: build(t), LogDir: logs})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, c: c}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"forwarder-n1.log", "forwarder-n2.log", "forwarder-n3.log", "frr-zebra.log", "frr-bfdd.log", "frr-bgpd.log"} {
				b, _ := os.ReadFile(filepath.Join(logs, f))
				lines := strings.Split(string(b), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("%s:\n%s", f, strings.Join(lines, "\n"))
			}
		}
		if w.router != nil {
			if err := w.router.Close(); err != nil {
				t.Errorf("FRR: %v", err)
			}
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	rh, err := c.Lab.AddHost("router", netip.PrefixFrom(routerAddr, 24), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if w.outside, err = c.Lab.AddHostBehind("outside", rh, netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("10.99.0.2/24")); err != nil {
		t.Fatal(err)
	}
	// IPv6 beside IPv4 on the same wire: the router and every node get an
	// address of fd88::/64, and a second BGPPeer (MP-BGP, ipv6-unicast)
	// carries the IPv6 pool's routes.
	if _, err := rh.IP("addr", "add", netip.PrefixFrom(routerAddr6, 64).String(), "dev", rh.Link, "nodad"); err != nil {
		t.Fatal(err)
	}
	cfg := frr.Config{ASN: routerASN, RouterID: routerAddr, Address6: routerAddr6, HoldTime: 9, Keepalive: 3, GracefulRestart: true, BFD: true}
	for i, n := range c.Nodes {
		if _, err := n.Host.IP("addr", "add", netip.PrefixFrom(nodeAddr6(i), 64).String(), "dev", n.Host.Link, "nodad"); err != nil {
			t.Fatal(err)
		}
		cfg.Neighbors = append(cfg.Neighbors, frr.Neighbor{Address: nodeAddr6(i), ASN: nodeASN, Password: password})
	}
	for _, n := range c.Nodes {
		// The router is the nodes' way to the client's subnet, as a
		// top-of-rack switch is their default gateway.
		if _, err := n.Host.IP("route", "add", "10.99.0.0/24", "via", routerAddr.String()); err != nil {
			t.Fatal(err)
		}
		cfg.Neighbors = append(cfg.Neighbors, frr.Neighbor{Address: n.Host.IPv4.Addr(), ASN: nodeASN, Password: password})
	}
	if w.router, err = frr.Start(rh, cfg, logs); err != nil {
		t.Fatal(err)
	}
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	// The forwarders run with --namespace default: their Secrets live there.
	w.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "tor-password"},
		Data: map[string][]byte{"password": []byte(password)}})
	w.create(&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: lbv1.BGPPeerSpec{
		Address: routerAddr.String(), PeerASN: routerASN, MyASN: nodeASN,
		PasswordSecret: &lbv1.SecretKeyRef{Name: "tor-password"},
		HoldTime:       &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second},
	}})
	w.create(&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor6"}, Spec: lbv1.BGPPeerSpec{
		Address: routerAddr6.String(), PeerASN: routerASN, MyASN: nodeASN,
		PasswordSecret: &lbv1.SecretKeyRef{Name: "tor-password"},
		HoldTime:       &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second},
	}})
	w.create(&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed6"}, Spec: lbv1.IPPoolSpec{
		Addresses: []string{"fd77::/124"}, Announce: lbv1.AnnounceBGP}})
	// BGP only: nobody answers ARP for these; the router is the only way.
	w.create(&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: lbv1.IPPoolSpec{
		Addresses: []string{"10.77.0.0/28"}, Announce: lbv1.AnnounceBGP}})
	w.create(&lbv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "tagged"}, Spec: lbv1.BGPAdvertisementSpec{
		IPPools: []string{"routed"}, Communities: []string{"65000:100"}, LargeCommunities: []string{"64513:1:2"}}})
	if err := c.StartOperator(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) create(objs ...client.Object) {
	w.t.Helper()
	for _, o := range objs {
		if err := w.c.Env.Client.Create(context.Background(), o); err != nil {
			w.t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
}

func (w *world) service(name string, port int32, selector map[string]string, policy corev1.ServiceExternalTrafficPolicy) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(class), Selector: selector,
			ExternalTrafficPolicy: policy,
			Ports:                 []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	w.create(svc)
	return svc
}

func (w *world) address(svc *corev1.Service) netip.AddrPort {
	w.t.Helper()
	var ip netip.Addr
	eventually(w.t, 30*time.Second, func() error {
		got := &corev1.Service{}
		if err := w.c.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
			return err
		}
		if len(got.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no address yet (conditions %v)", got.Status.Conditions)
		}
		ip = netip.MustParseAddr(got.Status.LoadBalancer.Ingress[0].IP)
		return nil
	})
	return netip.AddrPortFrom(ip, uint16(svc.Spec.Ports[0].Port))
}

// nodeAddrs are the InternalIPs of nodes i..., sorted.
func (w *world) nodeAddrs(idx ...int) []netip.Addr {
	var out []netip.Addr
	for _, i := range idx {
		out = append(out, w.c.Nodes[i].Host.IPv4.Addr())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// outside6 is the IPv6 client behind the router, on fd99::/64.
var (
	outside6   = netip.MustParsePrefix("fd99::2/64")
	outsideGW6 = netip.MustParsePrefix("fd99::1/64")
)

// plumbIPv6 gives the outside client, the pods and the nodes' forwarding
// IPv6 as a dual-stack CNI would: each pod gets fd20:0:<n>::2/64 behind its
// node (fd20:0:<n>::1) in its Pod object's podIPs, the other nodes route the
// pod's /64 through its node, and the nodes reach the client's subnet
// through the router.
func (w *world) plumbIPv6(pods []*cluster.Pod) {
	w.t.Helper()
	must := func(_ string, err error) {
		w.t.Helper()
		if err != nil {
			w.t.Fatal(err)
		}
	}
	rh := w.router.Host
	out, err := rh.IP("-o", "-4", "addr", "show")
	must(out, err)
	gwLink := ""
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && strings.HasPrefix(f[3], "10.99.0.1/") {
			gwLink = f[1]
		}
	}
	if gwLink == "" {
		w.t.Fatalf("no link to the outside client in the router:\n%s", out)
	}
	must(rh.IP("addr", "add", outsideGW6.String(), "dev", gwLink, "nodad"))
	must(w.outside.IP("addr", "add", outside6.String(), "dev", w.outside.Link, "nodad"))
	must(w.outside.IP("-6", "route", "add", "default", "via", outsideGW6.Addr().String()))
	nodeIdx := map[*cluster.Node]int{}
	for i, n := range w.c.Nodes {
		nodeIdx[n] = i
		must(netlab.Run("ip", "netns", "exec", n.Host.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"))
		must(n.Host.IP("-6", "route", "add", "fd99::/64", "via", routerAddr6.String()))
	}
	for _, p := range pods {
		idx := p.Gateway.As4()[2]
		podAddr := netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x20, 3: idx, 15: 2})
		gw := netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x20, 3: idx, 15: 1})
		must(p.Host.IP("addr", "add", netip.PrefixFrom(podAddr, 64).String(), "dev", "eth0", "nodad"))
		must(p.Host.IP("-6", "route", "add", "default", "via", gw.String()))
		must(p.Node.Host.IP("addr", "add", netip.PrefixFrom(gw, 64).String(), "dev", fmt.Sprintf("pod%d", idx), "nodad"))
		for _, other := range w.c.Nodes {
			if other != p.Node {
				must(other.Host.IP("-6", "route", "add", netip.PrefixFrom(podAddr, 64).Masked().String(), "via", nodeAddr6(nodeIdx[p.Node]).String()))
			}
		}
		var obj corev1.Pod
		if err := w.c.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(p.Object), &obj); err != nil {
			w.t.Fatal(err)
		}
		obj.Status.PodIPs = append(obj.Status.PodIPs, corev1.PodIP{IP: podAddr.String()})
		if err := w.c.Env.Client.Status().Update(context.Background(), &obj); err != nil {
			w.t.Fatal(err)
		}
	}
}

// nodeAddrs6 are the IPv6 addresses of nodes i..., sorted.
func (w *world) nodeAddrs6(idx ...int) []netip.Addr {
	var out []netip.Addr
	for _, i := range idx {
		out = append(out, nodeAddr6(i))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// nextHops waits until the router's kernel route to addr (a host route,
// /32 or /128) has exactly the next hops want (none: no route) and returns
// how long that took.
func (w *world) nextHops(addr netip.Addr, want []netip.Addr, within time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	prefix := netip.PrefixFrom(addr, addr.BitLen())
	eventually(w.t, within, func() error {
		got, err := w.router.NextHops(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("router's kernel route to %s has next hops %v, want %v", prefix, got, want)
		}
		return nil
	})
	return time.Since(start)
}

func TestBGPMode(t *testing.T) {
	w := setup(t)
	c := w.c
	var pods []*cluster.Pod
	for i, n := range c.Nodes {
		p, err := c.AddPod(n, ns, fmt.Sprintf("pod-%d", i+1), 8080, map[string]string{"app": "web"})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	web := w.service("web", 80, map[string]string{"app": "web"}, corev1.ServiceExternalTrafficPolicyCluster)
	addr := w.address(web)
	if !netip.MustParsePrefix("10.77.0.0/28").Contains(addr.Addr()) {
		t.Fatalf("address %s is not from the BGP pool", addr)
	}

	t.Run("sessions established with the password", func(t *testing.T) {
		eventually(t, 30*time.Second, func() error {
			peers, err := w.router.Summary(false)
			if err != nil {
				return err
			}
			for _, n := range c.Nodes {
				p := peers[n.Host.IPv4.Addr().String()]
				if p.State != "Established" || p.RemoteAS != nodeASN {
					return fmt.Errorf("router's view of %s: %+v (all: %+v)", n.Name, p, peers)
				}
			}
			return nil
		})
		out, err := w.router.Vtysh("show running-config")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "password "+password) {
			t.Errorf("router's configuration has no password; the test proves nothing:\n%s", out)
		}
	})

	t.Run("Cluster: one next hop per node (ECMP)", func(t *testing.T) {
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 30*time.Second)
	})

	t.Run("IPv6: MP-BGP to the router, one next hop per node in its IPv6 kernel table", func(t *testing.T) {
		web6 := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web6"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(class), Selector: map[string]string{"app": "web"},
				IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
				Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		w.create(web6)
		addr6 := w.address(web6).Addr()
		if !netip.MustParsePrefix("fd77::/124").Contains(addr6) {
			t.Fatalf("address %s is not from the IPv6 BGP pool", addr6)
		}
		eventually(t, 30*time.Second, func() error {
			peers, err := w.router.Summary(true)
			if err != nil {
				return err
			}
			for i, n := range c.Nodes {
				p := peers[nodeAddr6(i).String()]
				if p.State != "Established" || p.RemoteAS != nodeASN {
					return fmt.Errorf("router's IPv6 view of %s: %+v (all: %+v)", n.Name, p, peers)
				}
			}
			return nil
		})
		w.nextHops(addr6, w.nodeAddrs6(0, 1, 2), 30*time.Second)
		// Traffic from an IPv6 client behind the router reaches the pods.
		w.plumbIPv6(pods)
		dst := netip.AddrPortFrom(addr6, 80)
		eventually(t, 30*time.Second, func() error {
			_, err := dptest.AskTCP(w.outside, dst, time.Second)
			return err
		})
		seen := map[string]int{}
		for range 30 {
			r, err := dptest.AskTCP(w.outside, dst, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[r.Server]++
		}
		if len(seen) < 2 {
			t.Errorf("30 IPv6 connections reached only %v", seen)
		}
		// The IPv4 peer is sent no IPv6 prefix, and the IPv6 peer no IPv4 one.
		if got, err := w.router.NextHops(netip.PrefixFrom(addr.Addr(), 32)); err != nil || !slices.Equal(got, w.nodeAddrs(0, 1, 2)) {
			t.Errorf("IPv4 route's next hops %v (%v), want the nodes' IPv4 addresses", got, err)
		}
		// Each node's kernel data plane holds the IPv6 address.
		for _, n := range c.Nodes {
			eventually(t, 20*time.Second, func() error {
				out, err := netlab.Run("ip", "netns", "exec", n.Host.NS, "nft", "list", "ruleset")
				if err != nil {
					return err
				}
				if !strings.Contains(out, addr6.String()) {
					return fmt.Errorf("%s's nftables ruleset lacks %s", n.Name, addr6)
				}
				return nil
			})
		}
		// Deleting the Service withdraws its IPv6 route.
		if err := c.Env.Client.Delete(context.Background(), web6); err != nil {
			t.Fatal(err)
		}
		w.nextHops(addr6, nil, 30*time.Second)
	})

	t.Run("communities reach the router", func(t *testing.T) {
		out, err := w.router.Vtysh("show bgp ipv4 unicast " + addr.Addr().String() + "/32")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Community: 65000:100") || !strings.Contains(out, "Large Community: 64513:1:2") {
			t.Errorf("router's paths lack the advertisement's communities:\n%s", out)
		}
	})

	t.Run("traffic from behind the router reaches the pods", func(t *testing.T) {
		eventually(t, 20*time.Second, func() error {
			_, err := dptest.AskTCP(w.outside, addr, time.Second)
			return err
		})
		seen := map[string]int{}
		for range 60 {
			r, err := dptest.AskTCP(w.outside, addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[r.Server]++
		}
		if len(seen) < 2 {
			t.Errorf("60 connections reached only %v", seen)
		}
	})

	t.Run("status, metrics and events", func(t *testing.T) {
		eventually(t, 20*time.Second, func() error {
			var p lbv1.BGPPeer
			if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: "tor"}, &p); err != nil {
				return err
			}
			if len(p.Status.Sessions) != 3 {
				return fmt.Errorf("sessions %+v, want one per node", p.Status.Sessions)
			}
			for _, s := range p.Status.Sessions {
				if s.State != "Established" || s.Advertised < 1 || s.EstablishedSince == nil {
					return fmt.Errorf("session %+v", s)
				}
			}
			return nil
		})
		body := scrape(t, c.Nodes[0])
		for _, want := range []string{`portico_bgp_session_up{peer="tor"} 1`, `portico_bgp_advertised_routes{peer="tor"} 1`} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		var evs eventsv1.EventList
		if err := c.Env.Client.List(context.Background(), &evs); err != nil {
			t.Fatal(err)
		}
		established := 0
		for _, e := range evs.Items {
			if e.Regarding.Kind == "BGPPeer" && e.Regarding.Name == "tor" && e.Reason == "SessionEstablished" {
				established++
			}
		}
		if established < 3 {
			t.Errorf("%d SessionEstablished Events on BGPPeer tor, want one per node", established)
		}
	})

	t.Run("Local: only the endpoint's node, and it follows the endpoint", func(t *testing.T) {
		loc := w.service("local", 81, map[string]string{"pod": pods[1].Name}, corev1.ServiceExternalTrafficPolicyLocal)
		la := w.address(loc)
		w.nextHops(la.Addr(), w.nodeAddrs(1), 30*time.Second)
		var r dptest.Reply
		eventually(t, 20*time.Second, func() (err error) { r, err = dptest.AskTCP(w.outside, la, time.Second); return err })
		if r.Server != pods[1].Name || r.Client != w.outside.IPv4.Addr() {
			t.Errorf("reply %+v, want %s seeing the client's own address", r, pods[1].Name)
		}
		// The endpoint moves to node 3: its route follows.
		var got corev1.Service
		if err := c.Env.Client.Get(context.Background(), client.ObjectKeyFromObject(loc), &got); err != nil {
			t.Fatal(err)
		}
		got.Spec.Selector = map[string]string{"pod": pods[2].Name}
		if err := c.Env.Client.Update(context.Background(), &got); err != nil {
			t.Fatal(err)
		}
		d := w.nextHops(la.Addr(), w.nodeAddrs(2), 30*time.Second)
		t.Logf("route moved to node 3 within %s", d)
		// No ready endpoint anywhere: no route at all.
		if err := c.SetPodReady(pods[2], false); err != nil {
			t.Fatal(err)
		}
		w.nextHops(la.Addr(), nil, 30*time.Second)
		if err := c.SetPodReady(pods[2], true); err != nil {
			t.Fatal(err)
		}
		w.nextHops(la.Addr(), w.nodeAddrs(2), 30*time.Second)
	})

	t.Run("a stopped forwarder's next hop is withdrawn", func(t *testing.T) {
		c.StopForwarder(c.Nodes[0])
		d := w.nextHops(addr.Addr(), w.nodeAddrs(1, 2), 10*time.Second)
		t.Logf("next hop of the stopped forwarder withdrawn within %s", d)
		for range 20 {
			if _, err := dptest.AskTCP(w.outside, addr, 2*time.Second); err != nil {
				t.Fatalf("traffic after the withdrawal: %v", err)
			}
		}
		if err := c.StartForwarder(c.Nodes[0]); err != nil {
			t.Fatal(err)
		}
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 30*time.Second)
	})

	t.Run("a node that is not eligible withdraws", func(t *testing.T) {
		var n corev1.Node
		if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: c.Nodes[2].Name}, &n); err != nil {
			t.Fatal(err)
		}
		n.Labels[corev1.LabelNodeExcludeBalancers] = ""
		if err := c.Env.Client.Update(context.Background(), &n); err != nil {
			t.Fatal(err)
		}
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1), 10*time.Second)
		delete(n.Labels, corev1.LabelNodeExcludeBalancers)
		if err := c.Env.Client.Update(context.Background(), &n); err != nil {
			t.Fatal(err)
		}
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 10*time.Second)
	})

	t.Run("bad peers: a clear state, no crash, the good session unharmed", func(t *testing.T) {
		w.create(
			&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "nosecret"}, Spec: lbv1.BGPPeerSpec{Address: "10.88.0.253", PeerASN: routerASN, MyASN: nodeASN,
				PasswordSecret: &lbv1.SecretKeyRef{Name: "missing"}}},
			&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "unreachable"}, Spec: lbv1.BGPPeerSpec{Address: "10.88.0.252", PeerASN: routerASN, MyASN: nodeASN}},
			&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "zz-duplicate"}, Spec: lbv1.BGPPeerSpec{Address: routerAddr.String(), PeerASN: routerASN, MyASN: nodeASN}},
		)
		eventually(t, 30*time.Second, func() error {
			for name, want := range map[string]string{
				"nosecret":     `Disabled: password Secret "missing" not found`,
				"zz-duplicate": "Disabled: BGPPeer tor already peers with 10.88.0.254",
				"unreachable":  "Active",
			} {
				var p lbv1.BGPPeer
				if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &p); err != nil {
					return err
				}
				if len(p.Status.Sessions) != 3 {
					return fmt.Errorf("%s: sessions %+v", name, p.Status.Sessions)
				}
				for _, s := range p.Status.Sessions {
					got := s.State
					if s.State == "Disabled" {
						got += ": " + s.LastError
					}
					if !strings.HasPrefix(got, want) && !(want == "Active" && (s.State == "Connect" || s.State == "Idle")) {
						return fmt.Errorf("%s on %s: %q, want %q", name, s.Node, got, want)
					}
				}
			}
			return nil
		})
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 5*time.Second)
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("graceful restart keeps the routes through a forwarder restart", func(t *testing.T) {
		var p lbv1.BGPPeer
		if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: "tor"}, &p); err != nil {
			t.Fatal(err)
		}
		p.Spec.GracefulRestart, p.Spec.RestartTime = true, &metav1.Duration{Duration: 60 * time.Second}
		if err := c.Env.Client.Update(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
		// The sessions reopen with the capability; the router sees it.
		n1 := c.Nodes[0].Host.IPv4.Addr().String()
		eventually(t, 30*time.Second, func() error {
			out, err := w.router.Vtysh("show bgp neighbors " + n1 + " json")
			if err != nil {
				return err
			}
			if !strings.Contains(strings.Join(strings.Fields(out), ""), `"receivedRestartTimer":60`) {
				return fmt.Errorf("router has not received a restart time of 60s from %s: %s", n1, out)
			}
			return nil
		})
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 30*time.Second)
		c.StopForwarder(c.Nodes[0])
		// The router keeps n1's route (stale) while the forwarder is away,
		// and n1's data plane keeps serving the connections sent to it.
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			got, err := w.router.NextHops(netip.PrefixFrom(addr.Addr(), 32))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, w.nodeAddrs(0, 1, 2)) {
				t.Fatalf("next hops %v while n1's forwarder restarts, want all three kept", got)
			}
			if _, err := dptest.AskTCP(w.outside, addr, 2*time.Second); err != nil {
				t.Fatalf("traffic during the restart: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err := c.StartForwarder(c.Nodes[0]); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() error {
			peers, err := w.router.Summary(false)
			if err != nil {
				return err
			}
			if p := peers[n1]; p.State != "Established" || p.PfxRcd != 1 {
				return fmt.Errorf("router's view of n1 after the restart: %+v", p)
			}
			return nil
		})
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 5*time.Second)
	})

	t.Run("BFD withdraws a dead node's next hop in well under a second, IPv4 and IPv6", func(t *testing.T) {
		// An IPv6 Service beside the IPv4 one: the IPv6 BGPPeer runs
		// BFD over IPv6 (RFC 5881, hop limit 255) with the router.
		web6 := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web6-bfd"},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(class), Selector: map[string]string{"app": "web"},
				IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
				Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		w.create(web6)
		addr6 := w.address(web6).Addr()
		ms100 := &metav1.Duration{Duration: 100 * time.Millisecond}
		for _, name := range []string{"tor", "tor6"} {
			// The forwarders write the status meanwhile.
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				var p lbv1.BGPPeer
				if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &p); err != nil {
					return err
				}
				p.Spec.GracefulRestart, p.Spec.RestartTime = false, nil
				p.Spec.BFD = &lbv1.BFDSettings{ReceiveInterval: ms100, TransmitInterval: ms100, DetectMultiplier: ptr.To[int32](3)}
				return c.Env.Client.Update(context.Background(), &p)
			}); err != nil {
				t.Fatal(err)
			}
		}
		cmds := []string{"bfd", "profile fast", "receive-interval 100", "transmit-interval 100", "detect-multiplier 3", "exit", "exit",
			fmt.Sprintf("router bgp %d", routerASN)}
		bfdPeers := append(w.nodeAddrs(0, 1, 2), w.nodeAddrs6(0, 1, 2)...)
		for _, a := range bfdPeers {
			cmds = append(cmds, "neighbor "+a.String()+" bfd profile fast")
		}
		if err := w.router.Configure(cmds...); err != nil {
			t.Fatal(err)
		}
		// Every session Up on the router, IPv4 and IPv6, and detecting a
		// silent node within the configured 3 x 100 ms: a node that
		// advertised a slower transmit interval (or stayed at the 1 s of
		// a session not yet Up) would make the router wait longer, and
		// every failover with it.
		eventually(t, 30*time.Second, func() error {
			peers, err := w.router.BFDPeers()
			if err != nil {
				return err
			}
			for _, a := range bfdPeers {
				p, ok := peers[a]
				if !ok || p.Status != "up" {
					return fmt.Errorf("router's BFD session with %s: %+v, want up (all: %+v)", a, p, peers)
				}
				if d := p.DetectionTime(); d != 300*time.Millisecond {
					return fmt.Errorf("router's BFD session with %s detects in %s, want the configured 3 x 100ms (%+v)", a, d, p)
				}
			}
			return nil
		})
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 30*time.Second)
		w.nextHops(addr6, w.nodeAddrs6(0, 1, 2), 30*time.Second)
		eventually(t, 10*time.Second, func() error {
			for _, name := range []string{"tor", "tor6"} {
				var p lbv1.BGPPeer
				if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &p); err != nil {
					return err
				}
				for _, s := range p.Status.Sessions {
					if s.BFD != "Up" {
						return fmt.Errorf("%s session %+v, want BFD Up", name, s)
					}
				}
			}
			return nil
		})
		body := scrape(t, c.Nodes[1])
		for _, name := range []string{"tor", "tor6"} {
			if !strings.Contains(body, `portico_bgp_bfd_up{peer="`+name+`"} 1`) {
				t.Errorf("metrics lack portico_bgp_bfd_up{peer=%q} 1", name)
			}
		}
		// The node dies on the wire: no withdrawal, no NOTIFICATION, no
		// AdminDown, no TCP FIN (a killed process would still get one from
		// its kernel). Without BFD the router waits for the 9s hold time.
		if err := c.Nodes[0].Host.SetCable(false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		gone := map[netip.Addr]time.Duration{}
		for len(gone) < 2 {
			for a, want := range map[netip.Addr][]netip.Addr{addr.Addr(): w.nodeAddrs(1, 2), addr6: w.nodeAddrs6(1, 2)} {
				if _, ok := gone[a]; ok {
					continue
				}
				got, err := w.router.NextHops(netip.PrefixFrom(a, a.BitLen()))
				if err != nil {
					t.Fatal(err)
				}
				if slices.Equal(got, want) {
					gone[a] = time.Since(start)
				}
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("3s after n1's cable was cut only %v lost its next hop; BFD should have withdrawn both within a second", gone)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("dead node's next hops withdrawn after %s (IPv4) and %s (IPv6)", gone[addr.Addr()], gone[addr6])
		for a, d := range gone {
			if d > time.Second {
				t.Errorf("%s: withdrawn after %s, want well under a second with BFD 3 x 100ms", a, d)
			}
		}
		if err := c.Nodes[0].Host.SetCable(true); err != nil {
			t.Fatal(err)
		}
		// n1's side learns of the loss at its hold time, then reconnects.
		w.nextHops(addr.Addr(), w.nodeAddrs(0, 1, 2), 60*time.Second)
		w.nextHops(addr6, w.nodeAddrs6(0, 1, 2), 60*time.Second)
		if err := c.Env.Client.Delete(context.Background(), web6); err != nil {
			t.Fatal(err)
		}
		w.nextHops(addr6, nil, 30*time.Second)
	})

	t.Run("no route for an address that is not allocated", func(t *testing.T) {
		// Deleting the Service releases its address: its route goes.
		if err := c.Env.Client.Delete(context.Background(), web); err != nil {
			t.Fatal(err)
		}
		w.nextHops(addr.Addr(), nil, 30*time.Second)
	})
	if err := w.router.Err(); err != nil {
		t.Fatal(err)
	}
}

// scrape reads the forwarder's /metrics from inside its node (the socket
// is opened in the node's namespace; HTTP/1.0 by hand, since net/http dials
// from goroutines of its own).
func scrape(t *testing.T, n *cluster.Node) string {
	t.Helper()
	var conn net.Conn
	if err := n.Host.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", n.Host.IPv4.Addr().String()+":7474", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
