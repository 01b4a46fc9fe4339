package bgp

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
)

// TestOperatorAgreesWithPlan checks that the nodes the operator reports as
// advertising an address (local.BGPStatus, written to the LoadBalancer
// status) are exactly the nodes whose Plan routes it, when every planned
// session is Established: both follow model.BGPAdvertisementsFor, and the
// node rules (eligibility, ready endpoint for Local, nodeSelector) agree.
// An address shared by several Services is routed when any of them
// qualifies; every holder reports the same nodes. Before, each holder was
// judged alone: a Local sharer named only its own endpoints' nodes, and one
// that a serviceSelector left out named none (and was not Ready) while the
// routers had the address from its sharer.
func TestOperatorAgreesWithPlan(t *testing.T) {
	nodes := []*corev1.Node{
		testNode("a", true, map[string]string{"rack": "1", "tier": "edge"}),
		testNode("b", true, map[string]string{"rack": "2"}),
		testNode("c", true, map[string]string{"rack": "2", model.LabelExcludeFromLB: ""}),
		testNode("d", false, map[string]string{"rack": "1"}),
	}
	rack2 := func(s *lbv1.BGPPeerSpec) {
		s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "2"}}
	}
	peers := []lbv1.BGPPeer{peer("tor1", "10.0.0.1"), peer("tor2", "10.0.0.2", rack2), peer("tor6", "fd00::1")}
	pools := []lbv1.IPPool{pool("routed", lbv1.AnnounceBGP, "192.0.2.0/28", "2001:db8::/120"),
		pool("both", lbv1.AnnounceL2AndBGP, "198.51.100.0/28"), pool("arp", lbv1.AnnounceL2, "203.0.113.0/28")}
	pools[1].Labels["edge"] = "yes"
	services := []*corev1.Service{
		svc("web", false, "192.0.2.1", "2001:db8::1"),
		svc("db", true, "192.0.2.2"),
		svc("api", false, "198.51.100.1"),
		svc("l2", false, "203.0.113.1"),
		svc("quiet", false, "192.0.2.3"),
		// Shared addresses: loud shares quiet's address, which the
		// not-quiet advertisement sends for loud only; db2 shares db's
		// address with its endpoint on another node.
		svc("loud", false, "192.0.2.3"),
		svc("db2", true, "192.0.2.2"),
	}
	eps := []discoveryv1.EndpointSlice{endpoints("db", map[string]bool{"a": false, "b": true, "c": true}),
		endpoints("db2", map[string]bool{"a": true})}
	advs := [][]lbv1.BGPAdvertisement{
		nil,
		{adv("to-tor2", lbv1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Peers: []string{"tor2"}})},
		{adv("edge", lbv1.BGPAdvertisementSpec{IPPoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"edge": "yes"}}, Peers: []string{"tor1"}}),
			adv("not-quiet", lbv1.BGPAdvertisementSpec{IPPools: []string{"routed"},
				ServiceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"quiet"}}}}})},
		{adv("all", lbv1.BGPAdvertisementSpec{Peers: []string{"tor1", "tor6", "missing"}})},
	}
	for i, adv := range advs {
		// Every session a node's Plan opens is Established.
		withSessions := slices.Clone(peers)
		plans := map[string]map[string]PeerPlan{}
		for _, n := range nodes {
			plans[n.Name] = Plan(Inputs{Node: n, Services: services, EndpointSlices: eps, Pools: pools, Peers: peers, Advertisements: adv})
			for j := range withSessions {
				if pp, ok := plans[n.Name][withSessions[j].Name]; ok && pp.Error == "" {
					withSessions[j].Status.Sessions = append(withSessions[j].Status.Sessions, lbv1.BGPSession{Node: n.Name, State: StateEstablished})
				}
			}
		}
		labels := map[string]map[string]string{}
		for _, n := range nodes {
			if model.EligibleNode(n) { // as the operator reads them
				labels[n.Name] = n.Labels
			}
		}
		endpointNodes := model.EndpointNodes(eps)
		servingOf := func(s *corev1.Service) []string {
			var serving []string
			for _, n := range nodes {
				if model.EligibleNode(n) && (!model.LocalTraffic(s) || slices.Contains(endpointNodes[s.Namespace+"/"+s.Name], n.Name)) {
					serving = append(serving, n.Name)
				}
			}
			return serving
		}
		reported := map[netip.Addr]lbv1.BGPAddressStatus{}
		for _, s := range services {
			var sharers []local.BGPSharer
			for _, o := range services {
				if o != s && slices.ContainsFunc(model.IngressIPs(o), func(ip netip.Addr) bool { return slices.Contains(model.IngressIPs(s), ip) }) {
					sharers = append(sharers, local.BGPSharer{Labels: o.Labels, Addresses: model.IngressIPs(o), Serving: servingOf(o)})
				}
			}
			res := local.BGPStatus(local.BGPInputs{Labels: s.Labels, Addresses: model.IngressIPs(s), Serving: servingOf(s), NodeLabels: labels,
				Pools: pools, Peers: withSessions, Advertisements: adv, Sharers: sharers})
			// Every holder of a shared address reports it alike.
			if res.Status != nil {
				for _, a := range res.Status.Addresses {
					ip := netip.MustParseAddr(a.Address)
					if prev, ok := reported[ip]; ok && !reflect.DeepEqual(prev, a) {
						t.Errorf("advertisements #%d, %s %s: reported as %+v, by another holder as %+v", i, s.Name, ip, a, prev)
					}
					reported[ip] = a
				}
			}
			for _, ip := range model.IngressIPs(s) {
				var want []string
				for _, n := range nodes {
					if routes(plans[n.Name], ip) {
						want = append(want, n.Name)
					}
				}
				var got []string
				if res.Status != nil {
					for _, a := range res.Status.Addresses {
						if a.Address == ip.String() {
							got = a.Nodes
						}
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("advertisements #%d, %s %s: operator reports nodes %v, plans route it from %v", i, s.Name, ip, got, want)
				}
			}
		}
	}
}

// routes reports whether a node's plan sends a route covering ip to some
// peer.
func routes(plan map[string]PeerPlan, ip netip.Addr) bool {
	for _, pp := range plan {
		for _, r := range pp.Routes {
			if r.Prefix.Contains(ip) {
				return true
			}
		}
	}
	return false
}
