// Command bgpbench measures BGP mode against a real router: the one-machine
// cluster (e2e/cluster: apiserver, operator with the local backend, three
// node namespaces running the real portico-forwarder, a pod behind each),
// FRR (zebra, bgpd, bfdd) in a router namespace, and a client behind the
// router.
//
//   - announce: --addresses Services (externalTrafficPolicy Cluster) are
//     created 8 at a time; for each, the time from its address appearing in
//     its status (a watch event) to the route being in the router's kernel
//     table with one next hop per node (a netlink subscription in the
//     router's namespace), split by stage (informer, forwarder, router; with
//     --trace the router's part by FRR's bgpd and zebra).
//   - withdraw: up to 100 more Services, externalTrafficPolicy Local (a pod
//     on every node); the pod on node 3 turns unready; for each of them, the
//     time from its EndpointSlice losing node 3's ready endpoint to node 3's
//     next hop leaving the router's route (netlink) (the time from the pod change,
//     which adds the EndpointSlice controller's work, is printed too).
//   - failover: --runs times, node 1 is cut off the wire while the client
//     sends a UDP probe every 10 ms (each from a new port, so ECMP spreads
//     them over the nodes); the time from the cut to the last lost probe.
//     With --bfd the router detects the node by BFD (3 x 100 ms), without
//     it by the BGP hold time (9 s).
//   - announce IPv6: last (so the phases above run as without it), an IPv6
//     pool and a second BGPPeer (MP-BGP, ipv6-unicast, without BFD) are
//     created and --addresses6 IPv6 Services measured as in announce.
//
// The last line of output is
// bgp: addresses=N announce_p99_ms=N withdraw_p99_ms=N failover_p99_ms=N bfd=on|off addresses6=N announce6_p99_ms=N
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/e2e/frr"
	"github.com/portico-lb/portico/e2e/netlab"
)

var (
	addresses  = flag.Int("addresses", 1000, "Services (addresses) to announce.")
	runs       = flag.Int("runs", 5, "Node failures to measure.")
	useBFD     = flag.Bool("bfd", true, "Run BFD (3 x 100 ms) between the nodes and the router.")
	forwarder  = flag.String("forwarder", "bin/portico-forwarder", "portico-forwarder binary.")
	logDir     = flag.String("log-dir", "", "Directory for logs, announce-<set>.txt (per address: Unix ns of its status and of its complete route) and breakdown-<set>.txt (per address: its latency by stage); a temporary directory when empty.")
	addresses6 = flag.Int("addresses6", 1000, "IPv6 Services (addresses) to announce (0: none).")
	fwdArgs    = flag.String("forwarder-args", "", "Extra flags for every forwarder, space-separated (e.g. --no-dataplane, to see what the data plane's work costs the routes).")
	trace      = flag.Bool("trace", false, "Make FRR log every prefix received and sent to zebra, to split the router's part of the latency (costs the router some time).")
)

const (
	routerASN = 64512
	nodeASN   = 64513
	ns        = "bench"
)

var (
	routerAddr  = netip.MustParseAddr("10.88.0.254")
	routerAddr6 = netip.MustParseAddr("fd88::fe")
)

// nodeAddr6 is node i's IPv6 address on the nodes' bridge.
func nodeAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x88, 15: byte(i + 1)})
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bgpbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	c       *cluster.Cluster
	router  *frr.Router
	outside *netlab.Host
	pods    []*cluster.Pod
	nl      *netlink.Handle
	// nodeAddr6: node name -> its IPv6 address.
	nodeAddr6 map[string]netip.Addr
	bgpdLog   string
}

func (b *bench) logPath(name string) string { return filepath.Join(*logDir, name) }

func run() error {
	ctrl.SetLogger(logr.Discard())
	if why := frr.Available(); why != "" {
		return fmt.Errorf("%s", why)
	}
	if *logDir == "" {
		d, err := os.MkdirTemp("", "portico-bgpbench-")
		if err != nil {
			return err
		}
		*logDir = d
	}
	// V(4): the BGP watcher traces each route it hands to GoBGP (the
	// breakdown by stage).
	c, err := cluster.Start(cluster.Options{ForwarderBin: *forwarder, LogDir: *logDir, ForwarderArgs: append([]string{"--zap-log-level", "4"}, strings.Fields(*fwdArgs)...)})
	if err != nil {
		return err
	}
	b := &bench{c: c, nodeAddr6: map[string]netip.Addr{}, bgpdLog: filepath.Join(*logDir, "frr-bgpd.log")}
	defer func() {
		if b.router != nil {
			if err := b.router.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "FRR:", err)
			}
		}
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster:", err)
		}
	}()
	if err := b.setup(); err != nil {
		return err
	}
	// Announcement: Cluster policy, so the time is Portico's alone (a Local
	// Service also waits for its EndpointSlice).
	// One Service first, unmeasured: the operator's and the forwarders'
	// first reconciles (allocator rebuild, informers) are not announcement.
	warm, _, err := b.announce("w", 1, corev1.ServiceExternalTrafficPolicyCluster, false, nil)
	if err != nil {
		return err
	}
	addrs, announce, err := b.announce("c", *addresses, corev1.ServiceExternalTrafficPolicyCluster, false, warm)
	if err != nil {
		return err
	}
	// Withdrawal and failover: Local Services, a pod on every node.
	local, _, err := b.announce("l", min(*addresses, 100), corev1.ServiceExternalTrafficPolicyLocal, false, append(warm, addrs...))
	if err != nil {
		return err
	}
	withdraw, err := b.withdraw(local)
	if err != nil {
		return err
	}
	failover, err := b.failover(local[0])
	if err != nil {
		return err
	}
	// IPv6 last, so the phases before run as they did without it: the
	// IPv6 peer and pool are created now, and the same measurement runs
	// over MP-BGP after an unmeasured first Service.
	var addrs6 []netip.Addr
	var announce6 []time.Duration
	if *addresses6 > 0 {
		if err := b.setupIPv6(); err != nil {
			return err
		}
		warm6, _, err := b.announce("v", 1, corev1.ServiceExternalTrafficPolicyCluster, true, nil)
		if err != nil {
			return err
		}
		if addrs6, announce6, err = b.announce("s", *addresses6, corev1.ServiceExternalTrafficPolicyCluster, true, warm6); err != nil {
			return err
		}
	}
	if err := c.Err(); err != nil {
		return err
	}
	onOff := map[bool]string{true: "on", false: "off"}[*useBFD]
	fmt.Printf("bgp: addresses=%d announce_p99_ms=%d withdraw_p99_ms=%d failover_p99_ms=%d bfd=%s addresses6=%d announce6_p99_ms=%d\n",
		len(addrs), p99(announce), p99(withdraw), p99(failover), onOff, len(addrs6), p99(announce6))
	return nil
}

func (b *bench) setup() error {
	c := b.c
	ctx := context.Background()
	rh, err := c.Lab.AddHost("router", netip.PrefixFrom(routerAddr, 24), netip.Prefix{})
	if err != nil {
		return err
	}
	if b.outside, err = c.Lab.AddHostBehind("outside", rh, netip.MustParsePrefix("10.99.0.1/24"), netip.MustParsePrefix("10.99.0.2/24")); err != nil {
		return err
	}
	// IPv6 beside IPv4 on the same wire (as in e2e/bgp): the router and
	// every node get an address of fd88::/64, and a second BGPPeer
	// (MP-BGP, ipv6-unicast) carries the IPv6 pool's routes.
	if _, err := rh.IP("addr", "add", netip.PrefixFrom(routerAddr6, 64).String(), "dev", rh.Link, "nodad"); err != nil {
		return err
	}
	cfg := frr.Config{ASN: routerASN, RouterID: routerAddr, Address6: routerAddr6, HoldTime: 9, Keepalive: 3, BFD: *useBFD, Trace: *trace}
	for i, n := range c.Nodes {
		if _, err := n.Host.IP("route", "add", "10.99.0.0/24", "via", routerAddr.String()); err != nil {
			return err
		}
		if _, err := n.Host.IP("addr", "add", netip.PrefixFrom(nodeAddr6(i), 64).String(), "dev", n.Host.Link, "nodad"); err != nil {
			return err
		}
		b.nodeAddr6[n.Name] = nodeAddr6(i)
		cfg.Neighbors = append(cfg.Neighbors, frr.Neighbor{Address: n.Host.IPv4.Addr(), ASN: nodeASN},
			frr.Neighbor{Address: nodeAddr6(i), ASN: nodeASN})
	}
	if b.router, err = frr.Start(rh, cfg, *logDir); err != nil {
		return err
	}
	peer := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: lbv1.BGPPeerSpec{
		Address: routerAddr.String(), PeerASN: routerASN, MyASN: nodeASN,
		HoldTime: &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second}}}
	if *useBFD {
		ms100 := &metav1.Duration{Duration: 100 * time.Millisecond}
		peer.Spec.BFD = &lbv1.BFDSettings{ReceiveInterval: ms100, TransmitInterval: ms100, DetectMultiplier: ptr.To[int32](3)}
		cmds := []string{"bfd", "profile fast", "receive-interval 100", "transmit-interval 100", "detect-multiplier 3", "exit", "exit",
			fmt.Sprintf("router bgp %d", routerASN)}
		for _, n := range c.Nodes {
			cmds = append(cmds, "neighbor "+n.Host.IPv4.Addr().String()+" bfd profile fast")
		}
		if err := b.router.Configure(cmds...); err != nil {
			return err
		}
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		peer,
		&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed"}, Spec: lbv1.IPPoolSpec{Addresses: []string{"10.64.0.0/16"}, Announce: lbv1.AnnounceBGP}},
	} {
		if err := c.Env.Client.Create(ctx, o); err != nil {
			return err
		}
	}
	if err := c.StartOperator(); err != nil {
		return err
	}
	for i, n := range c.Nodes {
		p, err := c.AddPod(n, ns, fmt.Sprintf("pod-%d", i+1), 8080, map[string]string{"app": "web"})
		if err != nil {
			return err
		}
		b.pods = append(b.pods, p)
	}
	return nil
}

// setupIPv6 creates the IPv6 BGPPeer (without BFD: Portico runs BFD with
// IPv4 peers only) and the IPv6 pool; the router already has the nodes as
// IPv6 neighbors.
func (b *bench) setupIPv6() error {
	for _, o := range []client.Object{
		&lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "tor6"}, Spec: lbv1.BGPPeerSpec{
			Address: routerAddr6.String(), PeerASN: routerASN, MyASN: nodeASN,
			HoldTime: &metav1.Duration{Duration: 9 * time.Second}, KeepaliveTime: &metav1.Duration{Duration: 3 * time.Second}}},
		&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "routed6"}, Spec: lbv1.IPPoolSpec{Addresses: []string{"fd64::/112"}, Announce: lbv1.AnnounceBGP}},
	} {
		if err := b.c.Env.Client.Create(context.Background(), o); err != nil {
			return err
		}
	}
	return nil
}

// routes reads the router's kernel routes learned by BGP (protocol bgp):
// host route -> next hops. It reads them over netlink in the router's
// namespace; polling with the ip command every few milliseconds would cost
// the machine more than the forwarders being measured.
func (b *bench) routes() (map[netip.Addr][]netip.Addr, error) {
	if b.nl == nil {
		h, err := netns.GetFromName(b.router.Host.NS)
		if err != nil {
			return nil, err
		}
		if b.nl, err = netlink.NewHandleAt(h); err != nil {
			return nil, err
		}
	}
	rs, err := b.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: unix.RTPROT_BGP}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, err
	}
	m := map[netip.Addr][]netip.Addr{}
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		var hops []netip.Addr
		if g, ok := netip.AddrFromSlice(r.Gw.To4()); ok && r.Gw != nil {
			hops = append(hops, g)
		}
		for _, nh := range r.MultiPath {
			if g, ok := netip.AddrFromSlice(nh.Gw.To4()); ok && nh.Gw != nil {
				hops = append(hops, g)
			}
		}
		m[a] = hops
	}
	return m, nil
}

// announce creates count Services named prefix%04d with the given policy
// (IPv6 Services with v6) and measures, for each, the time from its address
// to its route with one next hop per node.
func (b *bench) announce(prefix string, count int, policy corev1.ServiceExternalTrafficPolicy, v6 bool, exclude []netip.Addr) ([]netip.Addr, []time.Duration, error) {
	c := b.c
	ctx := context.Background()
	fam := map[bool]string{false: "IPv4", true: "IPv6"}[v6]
	fmt.Printf("announce: creating %d %s Services (externalTrafficPolicy %s)\n", count, fam, policy)
	// Cluster Services select no pod: their routes need no endpoints, and
	// the EndpointSlice controller's work on a pod change (the withdraw
	// phase) stays with the Local Services.
	selector := map[string]string{"app": "none"}
	if policy == corev1.ServiceExternalTrafficPolicyLocal {
		selector = map[string]string{"app": "web"}
	}
	want := len(c.Nodes)
	fib, err := b.watchFIB(func(a netip.Addr, hops []netip.Addr) bool {
		return a.Is6() == v6 && len(hops) == want && !slices.Contains(exclude, a)
	})
	if err != nil {
		return nil, nil, err
	}
	stopFIB := sync.OnceValue(fib.stop)
	defer stopFIB()
	// Each address is timed from the watch event that shows it in its
	// Service's status.
	addressed, err := b.watchAddresses(prefix)
	if err != nil {
		return nil, nil, err
	}
	defer addressed.stop()
	// The Services are created (8 at a time) while the routes are
	// watched: the measurement must not wait for the last creation.
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	sem := make(chan struct{}, 8)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range count {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s%04d", prefix, i), Labels: map[string]string{"set": prefix}},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("lb.portico.dev/local"),
						Selector: selector, ExternalTrafficPolicy: policy,
						Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(8080)}}}}
				if v6 {
					svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
					svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
				}
				if err := c.Env.Client.Create(ctx, svc); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}()
		}
	}()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		seen, routed := addressed.seen(), fib.seen()
		done := 0
		for a := range seen {
			if _, ok := routed[a]; ok {
				done++
			}
		}
		if len(seen) == count && done == count {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("after 10 minutes %d addresses, %d of them routed", len(seen), done)
		}
		select {
		case err := <-errc:
			return nil, nil, err
		case <-time.After(10 * time.Millisecond):
		}
	}
	wg.Wait()
	if n := stopFIB(); n > 0 {
		fmt.Printf("announce: the netlink subscription was opened again %d times (routes complete by then timed at the new listing)\n", n)
	}
	seen, routed, hops := addressed.seen(), fib.seen(), fib.hops()
	var addrs []netip.Addr
	var lat []time.Duration
	for a, t := range seen {
		addrs = append(addrs, a)
		// A route seen before the event that showed its address counts as 0.
		lat = append(lat, max(0, routed[a].Sub(t)))
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	// Per address: when its status showed it and when its route was
	// complete (Unix ns), to lay beside a capture of the BGP UPDATEs.
	var trace strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&trace, "%s %d %d\n", a, seen[a].UnixNano(), routed[a].UnixNano())
	}
	if err := os.WriteFile(b.logPath("announce-"+prefix+".txt"), []byte(trace.String()), 0o644); err != nil {
		return nil, nil, err
	}
	fmt.Printf("announce: %d %s addresses routed over %d next hops, p50_ms=%d p99_ms=%d\n", len(addrs), fam, want, p50(lat), p99(lat))
	if count > 1 {
		if err := b.breakdown(prefix, seen, routed, hops); err != nil {
			return nil, nil, err
		}
	}
	return addrs, lat, nil
}

// withdraw makes the pod on node 3 unready and measures, for each Local
// Service, the time from its EndpointSlice losing node 3's ready endpoint
// (seen through a watch) to node 3's next hop leaving its route: endpoint
// loss to withdrawal, Portico's part. The time from the pod change, which
// adds the EndpointSlice controller's queue and its client's rate limit
// (20 writes/s in kube-controller-manager), is printed beside it.
func (b *bench) withdraw(addrs []netip.Addr) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n3 := b.c.Nodes[2]
	n3Addr := n3.Host.IPv4.Addr()
	var svcs corev1.ServiceList
	if err := b.c.Env.Client.List(ctx, &svcs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	svcOf := map[netip.Addr]string{}
	for _, s := range svcs.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				svcOf[a] = s.Name
			}
		}
	}
	wc, err := client.NewWithWatch(b.c.Env.Config, client.Options{Scheme: b.c.Env.Client.Scheme()})
	if err != nil {
		return nil, err
	}
	watch, err := wc.Watch(ctx, &discoveryv1.EndpointSliceList{}, client.InNamespace(ns))
	if err != nil {
		return nil, err
	}
	defer watch.Stop()
	var mu sync.Mutex
	lost := map[string]time.Time{}
	go func() {
		for ev := range watch.ResultChan() {
			es, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			now := time.Now()
			ready := false
			for _, ep := range es.Endpoints {
				if ep.NodeName != nil && *ep.NodeName == n3.Name && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					ready = true
				}
			}
			svc := es.Labels[discoveryv1.LabelServiceName]
			mu.Lock()
			if _, seen := lost[svc]; !seen && !ready && svc != "" {
				lost[svc] = now
			}
			mu.Unlock()
		}
	}()
	// The watch starts with the current slices (node 3 ready in each).
	time.Sleep(time.Second)
	inSet := map[netip.Addr]bool{}
	for _, a := range addrs {
		inSet[a] = true
	}
	fib, err := b.watchFIB(func(a netip.Addr, hops []netip.Addr) bool { return inSet[a] && !slices.Contains(hops, n3Addr) })
	if err != nil {
		return nil, err
	}
	stopFIB := sync.OnceValue(fib.stop)
	defer stopFIB()
	if early := len(fib.seen()); early > 0 {
		return nil, fmt.Errorf("withdraw: %d routes lacked node 3 before its pod changed", early)
	}
	start := time.Now()
	if err := b.c.SetPodReady(b.pods[2], false); err != nil {
		return nil, err
	}
	for len(fib.seen()) < len(addrs) {
		if time.Since(start) > 2*time.Minute {
			return nil, fmt.Errorf("withdraw: %d of %d routes lost node 3 within 2 minutes", len(fib.seen()), len(addrs))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := stopFIB(); n > 0 {
		fmt.Printf("withdraw: the netlink subscription was opened again %d times\n", n)
	}
	gone := fib.seen()
	// Wait for every slice's change (the EndpointSlice controller may
	// still be writing some when a route already lost node 3 for another
	// reason, a BFD flap; such a route counts 0 and is reported).
	for wait := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := 0
		for _, a := range addrs {
			if _, ok := lost[svcOf[a]]; ok {
				n++
			}
		}
		mu.Unlock()
		if n == len(addrs) || time.Now().After(wait) {
			break
		}
	}
	mu.Lock()
	var lat, fromPod []time.Duration
	early := 0
	for _, a := range addrs {
		if t, ok := lost[svcOf[a]]; ok && gone[a].Before(t) {
			early++
		}
	}
	if early > 0 {
		fmt.Printf("withdraw: %d routes lost node 3 before their EndpointSlice changed\n", early)
	}
	for _, a := range addrs {
		fromPod = append(fromPod, gone[a].Sub(start))
		t, ok := lost[svcOf[a]]
		if !ok {
			mu.Unlock()
			return nil, fmt.Errorf("withdraw: the watch never saw Service %s (%s) lose node 3's endpoint", svcOf[a], a)
		}
		// A route gone before the watch event arrived counts as 0.
		lat = append(lat, max(0, gone[a].Sub(t)))
	}
	mu.Unlock()
	fmt.Printf("withdraw: %d routes lost node 3; from the EndpointSlice change p50_ms=%d p99_ms=%d; from the pod change p50_ms=%d p99_ms=%d\n",
		len(lat), p50(lat), p99(lat), p50(fromPod), p99(fromPod))
	if err := b.c.SetPodReady(b.pods[2], true); err != nil {
		return nil, err
	}
	return lat, b.waitHops(addrs, len(b.c.Nodes), 2*time.Minute)
}

func (b *bench) waitHops(addrs []netip.Addr, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		rs, err := b.routes()
		if err != nil {
			return err
		}
		ok := 0
		for _, a := range addrs {
			if len(rs[a]) == want {
				ok++
			}
		}
		if ok == len(addrs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d routes have %d next hops after %s", ok, len(addrs), want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pct(ds []time.Duration, q float64) int64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))].Milliseconds()
}

func p50(ds []time.Duration) int64 { return pct(ds, 0.50) }
func p99(ds []time.Duration) int64 { return pct(ds, 0.99) }
