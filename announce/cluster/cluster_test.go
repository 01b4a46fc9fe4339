package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/portico-lb/portico/announce"
	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
)

func node(name, ip string, ready bool, labels map[string]string) corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
		},
	}
}

func service(name, class string, local bool, ips ...string) corev1.Service {
	s := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class},
	}
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func slice(svc string, eps map[string]bool) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for n, ready := range eps {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

// record is the operator's LoadBalancer record of svc: which class built it.
func record(svc corev1.Service, class string) v1alpha1.LoadBalancer {
	return v1alpha1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name}, Spec: v1alpha1.LoadBalancerSpec{Class: class}}
}

func TestBuildInputs(t *testing.T) {
	deleting := node("f", "10.0.0.6", true, nil)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	draining := node("e", "10.0.0.5", true, nil)
	draining.Spec.Taints = []corev1.Taint{{Key: model.TaintToBeDeleted, Effect: corev1.TaintEffectNoSchedule}}
	web := service("web", Class, false, "192.0.2.1", "2001:db8::1")
	db := service("db", Class, true, "192.0.2.2")
	cloud := service("cloud", "lb.portico.dev/aws", false, "192.0.2.3")
	pending := service("pending", Class, false)
	// Served through the operator's --default-class: no class in the spec,
	// the record says local.
	byDefault := service("bydefault", "", false, "192.0.2.4")
	byDefault.Spec.LoadBalancerClass = nil
	// Asks for local, but the operator has recorded nothing (it does not
	// serve local): no node may announce it.
	unrecorded := service("unrecorded", Class, false, "192.0.2.5")
	now := time.Unix(10000, 0)
	snap := Snapshot{
		Nodes: []corev1.Node{
			node("a", "10.0.0.1", true, nil),
			node("b", "10.0.0.2", false, nil),
			node("c", "fd00::3", true, nil),
			node("d", "10.0.0.4", true, map[string]string{model.LabelExcludeFromLB: ""}),
			draining, deleting,
			// Ready, but no forwarder runs there (a Windows node).
			node("g", "10.0.0.7", true, nil),
			// Ready, its forwarder stopped renewing long ago.
			node("h", "10.0.0.8", true, nil),
		},
		Leases: []coordinationv1.Lease{lease("a", now), lease("b", now), lease("c", now), lease("d", now), lease("e", now),
			lease("f", now), lease("h", now.Add(-time.Minute))},
		Services: []corev1.Service{web, db, cloud, pending, byDefault, unrecorded},
		LoadBalancers: []v1alpha1.LoadBalancer{record(web, Class), record(db, Class), record(cloud, "lb.portico.dev/aws"),
			record(pending, Class), record(byDefault, Class)},
		EndpointSlices: []discoveryv1.EndpointSlice{slice("db", map[string]bool{"c": true, "a": false})},
	}
	in, peers := BuildInputs(snap, "a", 7473, now)
	if fmt.Sprint(in.ReadyNodes) != "[a c g h]" {
		t.Errorf("ready nodes %v, want [a c g h] (b not Ready, d excluded, e drained by the autoscaler, f being deleted)", in.ReadyNodes)
	}
	if peers["c"] != netip.MustParseAddrPort("[fd00::3]:7473") || peers["d"] != netip.MustParseAddrPort("10.0.0.4:7473") || len(peers) != 5 {
		t.Errorf("peers %v, want a c d e f: g runs no forwarder, h's Lease expired", peers)
	}
	if in.Standby != "" {
		t.Errorf("a holds a valid Lease, yet stands by: %s", in.Standby)
	}
	got := fmt.Sprint(in.Addresses)
	want := "[{192.0.2.1 ns/web false []} {192.0.2.2 ns/db true [c]} {192.0.2.4 ns/bydefault false []} {2001:db8::1 ns/web false []}]"
	if got != want {
		t.Errorf("addresses\n got %s\nwant %s", got, want)
	}
}

func lease(node string, renewed time.Time) coordinationv1.Lease {
	t := metav1.NewMicroTime(renewed)
	return coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: LeaseName(node)},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &node, LeaseDurationSeconds: ptr.To(int32(40)), RenewTime: &t}}
}

// TestPeersAreForwarders: the quorum is counted over the nodes that run a
// forwarder, not over every Ready Node. Before, ten Ready nodes without a
// forwarder beside three with one left no node a majority: nothing was
// announced at all.
func TestPeersAreForwarders(t *testing.T) {
	now := time.Unix(10000, 0)
	snap := Snapshot{}
	for i := range 13 {
		name := fmt.Sprintf("n%02d", i)
		snap.Nodes = append(snap.Nodes, node(name, fmt.Sprintf("10.0.0.%d", i+1), true, nil))
		if i < 3 {
			snap.Leases = append(snap.Leases, lease(name, now))
		}
	}
	_, peers := BuildInputs(snap, "n00", 7473, now)
	if len(peers) != 3 {
		t.Fatalf("peer set %v, want the 3 nodes with a forwarder Lease", peers)
	}
	// Self without a Lease (RBAC denies it, the namespace is missing)
	// stands by: its peers do not count it, so it must not announce.
	in, _ := BuildInputs(snap, "n05", 7473, now)
	if in.Standby == "" {
		t.Fatal("a forwarder without its Lease does not stand by")
	}
}

func TestAnnouncements(t *testing.T) {
	svc := service("web", Class, false, "192.0.2.1", "2001:db8::1")
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	old := metav1.NewTime(time.Unix(1000, 0))
	current := []v1alpha1.Announcement{{Address: "192.0.2.1", Node: "a", Since: &old}, {Address: "2001:db8::1", Node: "a", Since: &old}}
	now := time.Unix(2000, 0)

	want, changes := Announcements(&svc, map[netip.Addr]string{v4: "a", v6: "b"}, current, now)
	if len(want) != 2 || want[0].Since != &old || want[1].Node != "b" || !want[1].Since.Time.Equal(now) {
		t.Errorf("announcements %+v", want)
	}
	if len(changes) != 1 || changes[0] != (Change{Address: "2001:db8::1", From: "a", To: "b"}) {
		t.Errorf("changes %+v", changes)
	}
	// No eligible node: the entry disappears.
	want, _ = Announcements(&svc, map[netip.Addr]string{v4: "a", v6: ""}, current, now)
	if len(want) != 1 {
		t.Errorf("an address without announcer stays listed: %+v", want)
	}
	if !Publisher(&svc, "a", []netip.Addr{v4}) || Publisher(&svc, "b", []netip.Addr{v6}) {
		t.Error("the announcer of the first address, and only it, publishes")
	}
}

// TestSharedAddressHasOneAnnouncer: Services that share an address (a
// Cluster and a Local one, or Local ones whose endpoints disagree) with
// endpoints on different nodes still get exactly one announcer for it, and it
// is a node that serves the Local sharer. Before, each Service's entry was
// decided on its own: the Cluster entry went to the rendezvous winner, the
// Local one to its endpoint's node, and both announced the address.
func TestSharedAddressHasOneAnnouncer(t *testing.T) {
	const ip = "192.0.2.10"
	nodes := []string{"a", "b", "c"}
	// The node every forwarder would pick for a Cluster-only address.
	clusterWinner := announce.Decide(netip.MustParseAddr(ip), nodes, nil)
	var endpointNode, otherNode string
	for _, n := range nodes {
		if n == clusterWinner {
			continue
		}
		if endpointNode == "" {
			endpointNode = n
		} else {
			otherNode = n
		}
	}
	tests := []struct {
		name     string
		services []corev1.Service
		slices   []discoveryv1.EndpointSlice
		want     []string // acceptable announcers
	}{
		{name: "cluster and local sharers",
			services: []corev1.Service{service("web", Class, false, ip), service("db", Class, true, ip)},
			slices:   []discoveryv1.EndpointSlice{slice("db", map[string]bool{endpointNode: true})},
			want:     []string{endpointNode}},
		{name: "local sharers with endpoints on different nodes",
			services: []corev1.Service{service("web", Class, true, ip), service("db", Class, true, ip)},
			slices: []discoveryv1.EndpointSlice{slice("web", map[string]bool{clusterWinner: true}),
				slice("db", map[string]bool{endpointNode: true})},
			want: []string{clusterWinner, endpointNode}},
		{name: "local sharers, one node serves both",
			services: []corev1.Service{service("web", Class, true, ip), service("db", Class, true, ip)},
			slices: []discoveryv1.EndpointSlice{slice("web", map[string]bool{clusterWinner: true, otherNode: true}),
				slice("db", map[string]bool{endpointNode: true, otherNode: true})},
			want: []string{otherNode}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{Services: tc.services, EndpointSlices: tc.slices}
			for _, s := range tc.services {
				snap.LoadBalancers = append(snap.LoadBalancers, record(s, Class))
			}
			for i, n := range nodes {
				snap.Nodes = append(snap.Nodes, node(n, fmt.Sprintf("10.0.0.%d", i+1), true, nil))
			}
			for _, n := range nodes {
				snap.Leases = append(snap.Leases, lease(n, time.Now()))
			}
			in, _ := BuildInputs(snap, "a", 7473, time.Now())
			var announcers []string
			for _, self := range nodes {
				_, mine := announce.Assign(announce.AssignInput{Self: self, Inputs: in,
					View: announce.View{Alive: nodes, Quorum: true}})
				if slices.Contains(mine, netip.MustParseAddr(ip)) {
					announcers = append(announcers, self)
				}
			}
			if len(announcers) != 1 || !slices.Contains(tc.want, announcers[0]) {
				t.Fatalf("announcers of %s: %v, want one of %v (cluster winner %s)", ip, announcers, tc.want, clusterWinner)
			}
		})
	}
}

// TestBGPOnlyPoolsAreNotAnsweredByARP: an address whose every pool is
// announced by BGP only is left to the routers; an address in an L2 or
// L2AndBGP pool (or in both kinds) is answered, and so is one in no pool.
// Before spec.announce existed every address was answered by ARP/NDP.
func TestBGPOnlyPoolsAreNotAnsweredByARP(t *testing.T) {
	pool := func(name, mode string, addrs ...string) v1alpha1.IPPool {
		return v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs, Announce: mode}}
	}
	svcs := []corev1.Service{
		service("routed", Class, false, "192.0.2.1", "2001:db8::1"),
		service("both", Class, false, "192.0.2.20"),
		service("l2", Class, false, "192.0.2.30"),
		service("unset", Class, false, "192.0.2.40"),
		service("twopools", Class, false, "192.0.2.50"),
		service("nopool", Class, false, "198.51.100.1"),
	}
	snap := Snapshot{
		Nodes:    []corev1.Node{node("a", "10.0.0.1", true, nil)},
		Leases:   []coordinationv1.Lease{lease("a", time.Unix(10000, 0))},
		Services: svcs,
		Pools: []v1alpha1.IPPool{
			pool("bgp", v1alpha1.AnnounceBGP, "192.0.2.0/28", "2001:db8::/120", "192.0.2.50"),
			pool("mixed", v1alpha1.AnnounceL2AndBGP, "192.0.2.20"),
			pool("arp", v1alpha1.AnnounceL2, "192.0.2.30"),
			pool("old", "", "192.0.2.40"),
			pool("arp2", v1alpha1.AnnounceL2, "192.0.2.50-192.0.2.51"),
		},
	}
	for _, s := range svcs {
		snap.LoadBalancers = append(snap.LoadBalancers, record(s, Class))
	}
	in, _ := BuildInputs(snap, "a", 7473, time.Unix(10000, 0))
	var got []string
	for _, a := range in.Addresses {
		got = append(got, a.IP.String())
	}
	if want := "[192.0.2.20 192.0.2.30 192.0.2.40 192.0.2.50 198.51.100.1]"; fmt.Sprint(got) != want {
		t.Errorf("answered by ARP/NDP %v, want %s", got, want)
	}
}
