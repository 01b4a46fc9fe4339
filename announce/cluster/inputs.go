// Package cluster feeds the announcer from Kubernetes and publishes its
// decisions: it watches Services whose LoadBalancer record says the operator
// serves them through lb.portico.dev/local (model.Recorded: the default class
// included), EndpointSlices and Nodes through a controller-runtime cache, and writes
// which node announces each address into LoadBalancer
// status.announcements (server-side apply, field manager
// "portico-forwarder") with an Event on the Service when it changes.
package cluster

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/announce"
	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
)

// Class is the loadBalancerClass whose addresses forwarders announce.
var Class = model.LocalClass

// Snapshot is what the cache holds.
type Snapshot struct {
	Services       []corev1.Service
	LoadBalancers  []v1alpha1.LoadBalancer
	EndpointSlices []discoveryv1.EndpointSlice
	Nodes          []corev1.Node
	// Leases are the forwarders' Leases (LeaseName) in their namespace.
	Leases []coordinationv1.Lease
	// Pools say how their addresses are announced (spec.announce).
	Pools []v1alpha1.IPPool
}

// l2Filter knows the addresses of pools announced by BGP only.
type l2Filter struct{ pools []l2Pool }

type l2Pool struct {
	ranges []local.Range
	l2     bool
}

// l2Pools reads the pools whose announce mode matters: an address is answered
// by ARP/NDP unless every pool holding it is announced by BGP only. Pools
// whose addresses do not parse hold nothing (the allocator does not use them
// either).
func l2Pools(pools []v1alpha1.IPPool) l2Filter {
	var f l2Filter
	for _, p := range pools {
		rs, err := local.ParseRanges(p.Spec.Addresses)
		if err != nil {
			continue
		}
		f.pools = append(f.pools, l2Pool{ranges: rs, l2: p.Spec.AnnouncedByL2()})
	}
	return f
}

func (f l2Filter) announces(ip netip.Addr) bool {
	held := false
	for _, p := range f.pools {
		if slices.ContainsFunc(p.ranges, func(r local.Range) bool { return r.Contains(ip) }) {
			if p.l2 {
				return true
			}
			held = true
		}
	}
	// An address in no pool (its pool just deleted, the operator about to
	// release it) keeps the behaviour from before pools had a mode.
	return !held
}

// Local returns the Services the operator serves through the local class.
func (s Snapshot) Local() []*corev1.Service {
	return model.OfClass(Class, s.Services, s.LoadBalancers)
}

// BuildInputs turns a snapshot into self's announcer inputs and the
// heartbeat peer set (node name -> InternalIP:port), which is also the set a
// node needs a majority of to announce: the Ready nodes that run a forwarder,
// known by its Lease valid at now. A Ready node without one (a Windows node,
// a virtual kubelet, a node the DaemonSet does not fit) is not counted, or
// it would hold every quorum hostage. Until self's own Lease is valid, self
// stands by. Only nodes eligible for load-balanced traffic
// (model.EligibleNode, the operator's rule) may announce. It is pure.
func BuildInputs(s Snapshot, self string, heartbeatPort uint16, now time.Time) (announce.Inputs, map[string]netip.AddrPort) {
	var in announce.Inputs
	peers := map[string]netip.AddrPort{}
	leased := map[string]bool{}
	for i := range s.Leases {
		l := &s.Leases[i]
		if node, ok := strings.CutPrefix(l.Name, LeasePrefix); ok && LeaseValid(l, now) &&
			l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == node {
			leased[node] = true
		}
	}
	if !leased[self] {
		in.Standby = "this forwarder's Lease " + LeaseName(self) + " is missing or expired (see its log)"
	}
	for _, n := range s.Nodes {
		if !model.Ready(&n) {
			// A NotReady node leaves the peer set too, so that once the
			// apiserver notices dead nodes the survivors regain quorum.
			continue
		}
		if ip, ok := model.NodeIP(&n); ok && leased[n.Name] {
			peers[n.Name] = netip.AddrPortFrom(ip, heartbeatPort)
		}
		if model.EligibleNode(&n) {
			in.ReadyNodes = append(in.ReadyNodes, n.Name)
		}
	}
	sort.Strings(in.ReadyNodes)

	endpointNodes := model.EndpointNodes(s.EndpointSlices)
	l2 := l2Pools(s.Pools)
	for _, svc := range s.Local() {
		key := svc.Namespace + "/" + svc.Name
		nodes := endpointNodes[key]
		for _, ip := range model.IngressIPs(svc) {
			if !l2.announces(ip) {
				continue // a BGP-only pool's address: the routers carry it
			}
			in.Addresses = append(in.Addresses, announce.Address{
				IP:            ip,
				Service:       key,
				LocalOnly:     model.LocalTraffic(svc),
				EndpointNodes: nodes,
			})
		}
	}
	// Services sharing an address give one entry each; announce.Assign
	// decides each address once over all of its entries.
	sort.Slice(in.Addresses, func(i, j int) bool {
		a, b := in.Addresses[i], in.Addresses[j]
		if a.IP != b.IP {
			return a.IP.Less(b.IP)
		}
		return a.Service < b.Service
	})
	return in, peers
}
