package local_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/local"
)

func bgpPool(name, mode string, addrs ...string) lbv1.IPPool {
	return lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}},
		Spec: lbv1.IPPoolSpec{Addresses: addrs, Announce: mode}}
}

// bgpPeer returns a BGPPeer whose status reports node:state sessions.
func bgpPeer(name, addr string, sessions ...string) lbv1.BGPPeer {
	p := lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: lbv1.BGPPeerSpec{Address: addr, PeerASN: 64512, MyASN: 64513}}
	for _, s := range sessions {
		node, state, _ := strings.Cut(s, ":")
		p.Status.Sessions = append(p.Status.Sessions, lbv1.BGPSession{Node: node, State: state})
	}
	return p
}

func bgpAdv(name string, pools, peers []string) lbv1.BGPAdvertisement {
	return lbv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: lbv1.BGPAdvertisementSpec{IPPools: pools, Peers: peers}}
}

func TestBGPStatus(t *testing.T) {
	nodes := map[string]map[string]string{"a": {"rack": "1"}, "b": {"rack": "2"}, "c": {"rack": "2"}}
	rack2 := bgpPeer("tor2", "10.0.0.2", "b:Established", "c:Established", "a:Established")
	rack2.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "2"}}
	tests := []struct {
		name    string
		addrs   []string
		serving []string
		labels  map[string]string
		pools   []lbv1.IPPool
		peers   []lbv1.BGPPeer
		advs    []lbv1.BGPAdvertisement
		// want: address -> advertising nodes; nil map: no BGP status.
		want     map[string][]string
		peersOf  map[string][]string // address -> peers, when checked
		notReady string              // reason; "" none
		warning  string              // part of the warning; "" none
		message  string              // part of the NotReady message
		sharers  []local.BGPSharer
	}{
		{name: "L2 pool: no BGP status", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceL2, "192.0.2.0/24")}, peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")}},
		{name: "every serving node with an Established session", addrs: []string{"192.0.2.1"}, serving: []string{"a", "b"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established", "b:Active", "c:Established")},
			want:  map[string][]string{"192.0.2.1": {"a"}}, peersOf: map[string][]string{"192.0.2.1": {"tor"}}},
		{name: "no peer at all", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			want:  map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNoBGPPeer, message: "there is no BGPPeer"},
		{name: "advertisement names a peer that does not exist", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			advs:  []lbv1.BGPAdvertisement{bgpAdv("adv", []string{"p"}, []string{"tor-typo"})},
			want:  map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNoBGPPeer, message: "BGPPeer tor-typo, which does not exist"},
		{name: "advertisement of another pool leaves this pool to every peer", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			advs:  []lbv1.BGPAdvertisement{bgpAdv("adv", []string{"other"}, []string{"tor-typo"})},
			want:  map[string][]string{"192.0.2.1": {"a"}}},
		{name: "serviceSelector excludes the Service", addrs: []string{"192.0.2.1"}, serving: []string{"a"}, labels: map[string]string{"app": "x"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			advs: []lbv1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: lbv1.BGPAdvertisementSpec{
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "y"}}}}},
			want: map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNoBGPPeer, message: "serviceSelector"},
		{name: "shared: a sharer the serviceSelector picks routes the address", addrs: []string{"192.0.2.1"}, serving: []string{"a"}, labels: map[string]string{"app": "x"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			advs: []lbv1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: lbv1.BGPAdvertisementSpec{
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "y"}}}}},
			sharers: []local.BGPSharer{{Labels: map[string]string{"app": "y"}, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Serving: []string{"a"}}},
			want:    map[string][]string{"192.0.2.1": {"a"}}, peersOf: map[string][]string{"192.0.2.1": {"tor"}}},
		{name: "shared: a Service of another address is no sharer", addrs: []string{"192.0.2.1"}, serving: []string{"a"}, labels: map[string]string{"app": "x"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			advs: []lbv1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: lbv1.BGPAdvertisementSpec{
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "y"}}}}},
			sharers: []local.BGPSharer{{Labels: map[string]string{"app": "y"}, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, Serving: []string{"a"}}},
			want:    map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNoBGPPeer, message: "serviceSelector"},
		{name: "shared Local: the union of the holders' endpoint nodes", addrs: []string{"192.0.2.1"}, serving: []string{"b"},
			pools:   []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers:   []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established", "b:Established", "c:Established")},
			sharers: []local.BGPSharer{{Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Serving: []string{"c"}}},
			want:    map[string][]string{"192.0.2.1": {"b", "c"}}},
		{name: "shared: a node serving only a sharer the peer does not receive does not advertise", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			labels: map[string]string{"app": "y"},
			pools:  []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers:  []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Active", "b:Established")},
			advs: []lbv1.BGPAdvertisement{{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: lbv1.BGPAdvertisementSpec{
				ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "y"}}}}},
			sharers: []local.BGPSharer{{Labels: map[string]string{"app": "x"}, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Serving: []string{"b"}}},
			want:    map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNotAdvertised},
		{name: "shared: sessions up on no node serving a holder", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")}, peers: []lbv1.BGPPeer{rack2},
			sharers: []local.BGPSharer{{Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}},
			want:    map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNotAdvertised, message: "nodes that serve it (a)"},
		{name: "IPv6 address and only IPv4 peers", addrs: []string{"2001:db8::1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "2001:db8::/120")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			want:  map[string][]string{"2001:db8::1": nil}, notReady: providers.ReasonNoBGPPeer, message: "IPv6"},
		{name: "no session established", addrs: []string{"192.0.2.1"}, serving: []string{"a", "b"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Active", "b:Disabled")},
			want:  map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNoBGPSession, message: "BGPPeer tor"},
		{name: "a stale Established entry of a deleted node counts for nothing", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "gone:Established")},
			want:  map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNoBGPSession},
		{name: "nodeSelector: a node no longer selected does not advertise", addrs: []string{"192.0.2.1"}, serving: []string{"a", "b"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")}, peers: []lbv1.BGPPeer{rack2},
			want: map[string][]string{"192.0.2.1": {"b"}}},
		{name: "sessions up but not on the serving nodes (Local)", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")}, peers: []lbv1.BGPPeer{rack2},
			want: map[string][]string{"192.0.2.1": nil}, notReady: providers.ReasonNotAdvertised, message: "nodes that serve it (a)"},
		{name: "no serving node: left to the Serving condition", addrs: []string{"192.0.2.1"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")}, peers: []lbv1.BGPPeer{rack2},
			want: map[string][]string{"192.0.2.1": nil}},
		{name: "L2AndBGP without sessions: a warning, still ready", addrs: []string{"192.0.2.1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceL2AndBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Idle")},
			want:  map[string][]string{"192.0.2.1": nil}, warning: "L2 still answers"},
		{name: "advertisement picks one of two peers", addrs: []string{"192.0.2.1"}, serving: []string{"a", "b"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")},
			peers: []lbv1.BGPPeer{bgpPeer("tor1", "10.0.0.1", "a:Established"), bgpPeer("tor2", "10.0.0.2", "b:Established")},
			advs:  []lbv1.BGPAdvertisement{bgpAdv("adv", []string{"p"}, []string{"tor2"})},
			want:  map[string][]string{"192.0.2.1": {"b"}}, peersOf: map[string][]string{"192.0.2.1": {"tor2"}}},
		{name: "dual stack: the IPv6 address has no peer", addrs: []string{"192.0.2.1", "2001:db8::1"}, serving: []string{"a"},
			pools: []lbv1.IPPool{bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24", "2001:db8::/120")},
			peers: []lbv1.BGPPeer{bgpPeer("tor", "10.0.0.1", "a:Established")},
			want:  map[string][]string{"192.0.2.1": {"a"}, "2001:db8::1": nil}, notReady: providers.ReasonNoBGPPeer, message: "2001:db8::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var addrs []netip.Addr
			for _, a := range tc.addrs {
				addrs = append(addrs, netip.MustParseAddr(a))
			}
			res := local.BGPStatus(local.BGPInputs{Labels: tc.labels, Addresses: addrs, Serving: tc.serving, NodeLabels: nodes,
				Pools: tc.pools, Peers: tc.peers, Advertisements: tc.advs, Sharers: tc.sharers})
			if tc.want == nil {
				if res.Status != nil || res.NotReady != nil || res.Warning != "" {
					t.Fatalf("got %+v, want no BGP status", res)
				}
				return
			}
			if res.Status == nil {
				t.Fatal("no BGP status")
			}
			got := map[string][]string{}
			var union []string
			for _, a := range res.Status.Addresses {
				got[a.Address] = a.Nodes
				union = append(union, a.Nodes...)
				if want, ok := tc.peersOf[a.Address]; ok && !slices.Equal(a.Peers, want) {
					t.Errorf("peers of %s = %v, want %v", a.Address, a.Peers, want)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("addresses %v, want %v", got, tc.want)
			}
			for a, want := range tc.want {
				if !slices.Equal(got[a], want) {
					t.Errorf("nodes advertising %s = %v, want %v", a, got[a], want)
				}
			}
			if union = slices.Compact(slices.Sorted(slices.Values(union))); !slices.Equal(res.Status.AdvertisingNodes, union) {
				t.Errorf("advertisingNodes = %v, want %v", res.Status.AdvertisingNodes, union)
			}
			switch {
			case tc.notReady == "" && res.NotReady != nil:
				t.Errorf("NotReady = %+v, want none", res.NotReady)
			case tc.notReady != "" && (res.NotReady == nil || res.NotReady.Reason != tc.notReady):
				t.Errorf("NotReady = %+v, want reason %s", res.NotReady, tc.notReady)
			case tc.message != "" && !strings.Contains(res.NotReady.Message, tc.message):
				t.Errorf("NotReady message %q does not say %q", res.NotReady.Message, tc.message)
			}
			if (tc.warning == "") != (res.Warning == "") || !strings.Contains(res.Warning, tc.warning) {
				t.Errorf("warning %q, want one saying %q", res.Warning, tc.warning)
			}
		})
	}
}

func TestAdvertisedCondition(t *testing.T) {
	v4 := bgpPool("p", lbv1.AnnounceBGP, "192.0.2.0/24")
	dual := bgpPool("p", lbv1.AnnounceL2AndBGP, "192.0.2.0/24", "2001:db8::/120")
	tor, tor6 := bgpPeer("tor", "10.0.0.1"), bgpPeer("tor6", "fd00::1")
	tests := []struct {
		name    string
		pool    lbv1.IPPool
		peers   []lbv1.BGPPeer
		advs    []lbv1.BGPAdvertisement
		status  string // "" no condition
		reason  string
		message string
	}{
		{name: "L2 pool: no condition", pool: bgpPool("p", lbv1.AnnounceL2, "192.0.2.0/24"), peers: []lbv1.BGPPeer{tor}},
		{name: "no BGPPeer", pool: v4, status: "False", reason: "NoPeer", message: "there is no BGPPeer"},
		{name: "no advertisement: every peer", pool: v4, peers: []lbv1.BGPPeer{tor}, status: "True", reason: "Advertised", message: "tor"},
		{name: "advertisements of other pools do not count", pool: v4, peers: []lbv1.BGPPeer{tor},
			advs: []lbv1.BGPAdvertisement{bgpAdv("other", []string{"q"}, []string{"nope"})}, status: "True", reason: "Advertised"},
		{name: "advertisement names a missing peer", pool: v4, peers: []lbv1.BGPPeer{tor},
			advs: []lbv1.BGPAdvertisement{bgpAdv("adv", []string{"p"}, []string{"tor-typo"})}, status: "False", reason: "NoPeer", message: "tor-typo"},
		{name: "one advertisement without peers sends to all", pool: v4, peers: []lbv1.BGPPeer{tor},
			advs: []lbv1.BGPAdvertisement{bgpAdv("a", []string{"p"}, []string{"tor-typo"}), bgpAdv("b", []string{"p"}, nil)}, status: "True", message: "tor-typo, which does not exist"},
		{name: "IPv6 addresses without an IPv6 peer", pool: dual, peers: []lbv1.BGPPeer{tor}, status: "False", reason: "NoPeer", message: "no IPv6 BGPPeer"},
		{name: "dual stack with a peer of each family", pool: dual, peers: []lbv1.BGPPeer{tor, tor6}, status: "True", message: "tor, tor6"},
		{name: "advertisement to the IPv4 peer only", pool: dual, peers: []lbv1.BGPPeer{tor, tor6},
			advs: []lbv1.BGPAdvertisement{bgpAdv("adv", []string{"p"}, []string{"tor"})}, status: "False", reason: "NoPeer", message: "IPv6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := local.AdvertisedCondition(&tc.pool, tc.peers, tc.advs)
			if tc.status == "" {
				if c != nil {
					t.Fatalf("condition %+v, want none", c)
				}
				return
			}
			if c == nil || string(c.Status) != tc.status || (tc.reason != "" && c.Reason != tc.reason) || !strings.Contains(c.Message, tc.message) {
				t.Fatalf("condition %+v, want %s/%s saying %q", c, tc.status, tc.reason, tc.message)
			}
		})
	}
}
