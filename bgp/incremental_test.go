package bgp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// TestIncrementalPlansOneService: with 1,000 Services planned, a new
// Service's route is found by planning that Service alone, and the change
// handed to the speaker is that one prefix. Before, every event replanned
// every Service (Plan over all of them) and diffed every path.
func TestIncrementalPlansOneService(t *testing.T) {
	in := Inputs{Node: testNode("n1", true, nil), Pools: []lbv1.IPPool{pool("routed", "BGP", "10.64.0.0/16")},
		Peers: []lbv1.BGPPeer{peer("tor", "10.88.0.254")}}
	for i := range 1000 {
		name := fmt.Sprintf("s%04d", i)
		in.Services = append(in.Services, svc(name, false, fmt.Sprintf("10.64.%d.%d", i/256, i%256)))
		in.EndpointSlices = append(in.EndpointSlices, endpoints(name, map[string]bool{"n1": true}))
	}
	var inc Incremental
	inc.Reset(in)
	if got := len(inc.Plans()["tor"].Routes); got != 1000 {
		t.Fatalf("%d routes after Reset, want 1000", got)
	}
	before := inc.Planned
	start := time.Now()
	d := inc.Update("ns/new", svc("new", false, "10.64.10.1"), nil)
	took := time.Since(start)
	if n := inc.Planned - before; n != 1 {
		t.Errorf("an update planned %d Services, want 1", n)
	}
	want := netip.MustParsePrefix("10.64.10.1/32")
	if len(d) != 1 || len(d["tor"]) != 1 || d["tor"][want] == nil {
		t.Errorf("delta %v, want only %s to tor", d, want)
	}
	// Generous for a shared machine; a full plan of 1,000 Services takes
	// milliseconds.
	if took > 20*time.Millisecond {
		t.Errorf("an update took %s", took)
	}
	// Deleting it withdraws only it.
	d = inc.Update("ns/new", nil, nil)
	if len(d["tor"]) != 1 || d["tor"][want] != nil {
		t.Errorf("delta after delete %v, want %s withdrawn", d, want)
	}
}

// TestIncrementalEqualsPlan: after any sequence of changes to Services,
// EndpointSlices and (through Reset) the shared inputs, the incremental
// plan equals Plan over everything, and the deltas it returned, applied in
// order, give the same routes.
func TestIncrementalEqualsPlan(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 17))
		u := newUniverse(r)
		var inc Incremental
		inc.Reset(u.inputs())
		mirror := routesOf(inc.Plans())
		for step := range 60 {
			var what string
			switch k := r.IntN(10); {
			case k < 4:
				name := fmt.Sprintf("s%d", r.IntN(8))
				u.svcs[name] = u.randomService(name)
				what = "service " + name
			case k < 5:
				name := fmt.Sprintf("s%d", r.IntN(8))
				delete(u.svcs, name)
				what = "delete " + name
			case k < 8:
				name := fmt.Sprintf("s%d", r.IntN(8))
				u.eps[name] = u.randomSlice(name)
				what = "slice " + name
			default:
				u.randomShared()
				inc.Reset(u.inputs())
				mirror = routesOf(inc.Plans())
				what = "shared"
			}
			if what != "shared" {
				name := what[len(what)-2:]
				var s *corev1.Service
				if sv, ok := u.svcs[name]; ok {
					s = sv
				}
				var eps []discoveryv1.EndpointSlice
				if es, ok := u.eps[name]; ok {
					eps = append(eps, es)
				}
				for peer, ps := range inc.Update("ns/"+name, s, eps) {
					for p, rt := range ps {
						if rt == nil {
							delete(mirror[peer], p)
							continue
						}
						if mirror[peer] == nil {
							mirror[peer] = map[netip.Prefix]Route{}
						}
						mirror[peer][p] = *rt
					}
				}
			}
			full := Plan(u.inputs())
			if got, want := show(inc.Plans()), show(full); got != want {
				t.Fatalf("seed %d step %d (%s):\nincremental %s\nPlan        %s", seed, step, what, got, want)
			}
			if got, want := showRoutes(mirror), showRoutes(routesOf(full)); got != want {
				t.Fatalf("seed %d step %d (%s): deltas applied give\n%s\nPlan gives\n%s", seed, step, what, got, want)
			}
		}
	}
}

func routesOf(plans map[string]PeerPlan) map[string]map[netip.Prefix]Route {
	out := map[string]map[netip.Prefix]Route{}
	for name, pp := range plans {
		if pp.Error != "" || len(pp.Routes) == 0 {
			continue
		}
		out[name] = map[netip.Prefix]Route{}
		for _, r := range pp.Routes {
			out[name][r.Prefix] = r
		}
	}
	return out
}

func showRoutes(m map[string]map[netip.Prefix]Route) string {
	plans := map[string]PeerPlan{}
	for name, rs := range m {
		if len(rs) == 0 {
			continue
		}
		pp := PeerPlan{}
		for _, r := range rs {
			pp.Routes = append(pp.Routes, r)
		}
		slicesSortRoutes(pp.Routes)
		plans[name] = pp
	}
	return show(plans)
}

func slicesSortRoutes(rs []Route) {
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			if prefixLess(rs[j].Prefix, rs[i].Prefix) {
				rs[i], rs[j] = rs[j], rs[i]
			}
		}
	}
}

// universe is a small random cluster: few addresses, so Services share
// them; several pools, peers and advertisements with attributes.
type universe struct {
	r     *rand.Rand
	node  *corev1.Node
	svcs  map[string]*corev1.Service
	eps   map[string]discoveryv1.EndpointSlice
	pools []lbv1.IPPool
	peers []lbv1.BGPPeer
	advs  []lbv1.BGPAdvertisement
}

var universeIPs = []string{"10.64.0.1", "10.64.0.2", "10.64.0.130", "10.65.0.1", "10.66.0.1", "fd64::1", "fd64::2"}

func newUniverse(r *rand.Rand) *universe {
	u := &universe{r: r, svcs: map[string]*corev1.Service{}, eps: map[string]discoveryv1.EndpointSlice{}}
	u.randomShared()
	for i := range 5 {
		name := fmt.Sprintf("s%d", i)
		u.svcs[name] = u.randomService(name)
		u.eps[name] = u.randomSlice(name)
	}
	return u
}

func (u *universe) randomService(name string) *corev1.Service {
	var ips []string
	for range u.r.IntN(3) {
		ips = append(ips, universeIPs[u.r.IntN(len(universeIPs))])
	}
	s := svc(name, u.r.IntN(2) == 0, ips...)
	s.Labels["tier"] = []string{"web", "db"}[u.r.IntN(2)]
	return s
}

func (u *universe) randomSlice(name string) discoveryv1.EndpointSlice {
	nodes := map[string]bool{}
	for _, n := range []string{"n1", "n2"} {
		if u.r.IntN(3) > 0 {
			nodes[n] = u.r.IntN(2) == 0
		}
	}
	return endpoints(name, nodes)
}

func (u *universe) randomShared() {
	u.node = testNode("n1", u.r.IntN(6) > 0, map[string]string{"rack": []string{"a", "b"}[u.r.IntN(2)]})
	u.pools = []lbv1.IPPool{pool("p1", "BGP", "10.64.0.0/24"), pool("p2", []string{"BGP", "L2AndBGP", "L2"}[u.r.IntN(3)], "10.65.0.0/24"),
		pool("p6", "BGP", "fd64::/120")}
	u.peers = []lbv1.BGPPeer{peer("tor4", "10.88.0.254"), peer("tor6", "fd88::fe"),
		peer("rack-a", "10.88.1.254", func(s *lbv1.BGPPeerSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
		})}
	if u.r.IntN(4) == 0 {
		u.peers = append(u.peers, peer("dup", "10.88.0.254"))
	}
	u.advs = nil
	if u.r.IntN(3) > 0 {
		u.advs = append(u.advs, adv("web", lbv1.BGPAdvertisementSpec{IPPools: []string{"p1"},
			ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}},
			Communities:     []string{"64512:1"}, LocalPref: ptr.To[int64](200)}))
	}
	if u.r.IntN(3) > 0 {
		u.advs = append(u.advs, adv("all", lbv1.BGPAdvertisementSpec{Communities: []string{"64512:2"},
			LargeCommunities: []string{"1:2:3"}, LocalPref: ptr.To[int64](int64(u.r.IntN(300))), Peers: []string{"tor4", "tor6"}}))
	}
	if u.r.IntN(3) == 0 {
		u.advs = append(u.advs, adv("agg", lbv1.BGPAdvertisementSpec{IPPoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "p1"}},
			AggregationLength: ptr.To[int32](25), Communities: []string{"64512:3"}}))
	}
}

func (u *universe) inputs() Inputs {
	in := Inputs{Node: u.node, Pools: u.pools, Peers: u.peers, Advertisements: u.advs}
	for _, name := range sortedKeys(u.svcs) {
		in.Services = append(in.Services, u.svcs[name])
	}
	for _, name := range sortedKeys(u.eps) {
		in.EndpointSlices = append(in.EndpointSlices, u.eps[name])
	}
	return in
}
