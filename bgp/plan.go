package bgp

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/bfd"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
)

// Defaults of a BGPPeer's optional fields.
const (
	DefaultPort        = 179
	DefaultHoldTime    = 90 * time.Second
	DefaultRestartTime = 120 * time.Second
	// DefaultPasswordKey is the Secret key read when passwordSecret.key is
	// empty.
	DefaultPasswordKey = "password"
	// DefaultBFDInterval and DefaultBFDMultiplier are BFD's defaults.
	DefaultBFDInterval   = 300 * time.Millisecond
	DefaultBFDMultiplier = 3
)

// Peer is a BGPPeer as one node's speaker opens it.
type Peer struct {
	// Name is the BGPPeer's name.
	Name            string
	Address         netip.Addr
	Port            uint16
	PeerASN, MyASN  uint32
	Password        string
	HoldTime        time.Duration
	KeepaliveTime   time.Duration
	EBGPMultiHop    bool
	GracefulRestart bool
	RestartTime     time.Duration
	// BFD is the BFD session's timers; DetectMult 0: no BFD.
	BFD bfd.Config
}

// Route is one prefix advertised to a peer with its path attributes.
type Route struct {
	Prefix netip.Prefix
	// Communities (RFC 1997) as "ASN:value", sorted.
	Communities []string
	// LargeCommunities (RFC 8092) as "global:local1:local2", sorted.
	LargeCommunities []string
	// LocalPref is LOCAL_PREF for iBGP peers; 0 leaves the default.
	LocalPref uint32
}

// PeerPlan is what this node does with one BGPPeer.
type PeerPlan struct {
	Peer Peer
	// Routes are advertised to the peer, sorted by prefix.
	Routes []Route
	// Error, when set, keeps the session closed (bad input: a missing
	// password Secret, a duplicate peer address); it goes to the peer's
	// status.
	Error string
}

// Inputs are what Plan decides from. Services are those the operator serves
// through the local class (model.OfClass); Secrets are the Secrets of the
// forwarders' namespace by name.
type Inputs struct {
	Node           *corev1.Node
	Services       []*corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice
	Pools          []lbv1.IPPool
	Peers          []lbv1.BGPPeer
	Advertisements []lbv1.BGPAdvertisement
	Secrets        map[string]*corev1.Secret
}

// Plan decides, for one node, which BGPPeers it opens a session with and
// which prefixes it advertises to each, keyed by BGPPeer name. It is pure.
//
//   - A peer applies to the node when its nodeSelector matches the node's
//     labels. Two peers with one address: the first by name is used, the
//     others get an Error.
//   - An address is advertised only while it is in status.loadBalancer of a
//     Service the operator serves through the local class and inside a pool
//     announced by BGP (spec.announce BGP or L2AndBGP): an address that is
//     not allocated never gets a route.
//   - The node must be eligible for load-balanced traffic
//     (model.EligibleNode); for externalTrafficPolicy Local it must also hold
//     a ready endpoint of the Service (model.EndpointNodes). An address
//     shared by several Services is advertised if any of them qualifies.
//   - The BGPAdvertisements that select the address's pool (by name or
//     label; an advertisement with neither selects every BGP pool) and its
//     Service say to which peers and with which attributes; a BGP pool no
//     advertisement selects is advertised as host routes to every peer.
//   - A peer receives only prefixes of its own address family.
func Plan(in Inputs) map[string]PeerPlan {
	pl := newPlanner(in)
	routes := map[string]map[netip.Prefix]*Route{}
	if pl.active {
		// Only Local Services need their endpoints' nodes: reading every
		// Service's slices was more than half of a plan's time at 1,000
		// Cluster Services (BenchmarkPlan).
		local := map[string]bool{}
		for _, svc := range in.Services {
			if model.LocalTraffic(svc) {
				local[svc.Namespace+"/"+svc.Name] = true
			}
		}
		var localSlices []discoveryv1.EndpointSlice
		for i := range in.EndpointSlices {
			es := &in.EndpointSlices[i]
			if local[es.Namespace+"/"+es.Labels[discoveryv1.LabelServiceName]] {
				localSlices = append(localSlices, *es)
			}
		}
		endpoints := model.EndpointNodes(localSlices)
		for _, svc := range in.Services {
			pl.service(svc, endpoints, routes)
		}
	}
	out := maps.Clone(pl.peers)
	for name, rs := range routes {
		pp := out[name]
		for _, r := range rs {
			pp.Routes = append(pp.Routes, *r)
		}
		sort.Slice(pp.Routes, func(i, j int) bool { return prefixLess(pp.Routes[i].Prefix, pp.Routes[j].Prefix) })
		out[name] = pp
	}
	return out
}

// planner is Plan's reading of the inputs every Service shares: the node,
// its peers, the BGP pools and the advertisements. Incremental keeps one to
// plan Services one at a time by the same rule.
type planner struct {
	node  string
	peers map[string]PeerPlan // without routes
	pools []bgpPool
	advs  []lbv1.BGPAdvertisement
	// active: the node has a peer, is eligible and some pool is BGP's.
	active bool
}

func newPlanner(in Inputs) *planner {
	pl := &planner{peers: map[string]PeerPlan{}}
	if in.Node == nil {
		return pl
	}
	pl.node = in.Node.Name
	nodeLabels := labels.Set(in.Node.Labels)
	byAddress := map[netip.Addr]string{}
	peers := slices.Clone(in.Peers)
	slices.SortFunc(peers, func(a, b lbv1.BGPPeer) int { return cmp.Compare(a.Name, b.Name) })
	for _, bp := range peers {
		if !selects(bp.Spec.NodeSelector, nodeLabels) {
			continue
		}
		p, err := readPeer(&bp, in.Secrets)
		if err == nil {
			if other, dup := byAddress[p.Address]; dup {
				err = fmt.Errorf("BGPPeer %s already peers with %s from this node", other, p.Address)
			} else {
				byAddress[p.Address] = bp.Name
			}
		}
		pp := PeerPlan{Peer: p}
		if err != nil {
			pp.Error = err.Error()
		}
		pl.peers[bp.Name] = pp
	}
	if len(pl.peers) == 0 || !model.EligibleNode(in.Node) {
		return pl
	}
	pl.pools, pl.advs = bgpPools(in.Pools), in.Advertisements
	pl.active = len(pl.pools) > 0
	return pl
}

// service adds svc's routes to routes (peer -> prefix); endpoints are the
// nodes of ready endpoints by "namespace/name" (model.EndpointNodes), read
// only for externalTrafficPolicy Local.
func (pl *planner) service(svc *corev1.Service, endpoints map[string][]string, routes map[string]map[netip.Prefix]*Route) {
	if !pl.active {
		return
	}
	if model.LocalTraffic(svc) && !slices.Contains(endpoints[svc.Namespace+"/"+svc.Name], pl.node) {
		return
	}
	for _, ip := range model.IngressIPs(svc) {
		for _, pool := range pl.pools {
			if !pool.contains(ip) {
				continue
			}
			for _, adv := range advertisementsFor(pool.obj, svc, pl.advs) {
				for name, pp := range pl.peers {
					if pp.Error != "" || pp.Peer.Address.Is4() != ip.Is4() || !adv.toPeer(name) {
						continue
					}
					addRoute(routes, name, ip, adv)
				}
			}
		}
	}
}

func prefixLess(a, b netip.Prefix) bool {
	if a.Addr() != b.Addr() {
		return a.Addr().Less(b.Addr())
	}
	return a.Bits() < b.Bits()
}

func selects(sel *metav1.LabelSelector, set labels.Set) bool {
	return model.Selects(sel, set) // an invalid selector selects nothing
}

// readPeer turns a BGPPeer into the session's settings, refusing what the
// CRD's validation should already have refused (objects stored before a
// rule existed) and what it cannot see (the password Secret).
func readPeer(bp *lbv1.BGPPeer, secrets map[string]*corev1.Secret) (Peer, error) {
	s := bp.Spec
	p := Peer{Name: bp.Name, Port: DefaultPort, HoldTime: DefaultHoldTime, RestartTime: DefaultRestartTime,
		EBGPMultiHop: s.EBGPMultiHop, GracefulRestart: s.GracefulRestart}
	a, err := netip.ParseAddr(s.Address)
	if err != nil {
		return p, fmt.Errorf("address %q is not an IP address", s.Address)
	}
	p.Address = a.Unmap()
	if s.Port != 0 {
		if s.Port < 0 || s.Port > math.MaxUint16 {
			return p, fmt.Errorf("port %d is out of range", s.Port)
		}
		p.Port = uint16(s.Port)
	}
	for _, asn := range []struct {
		name string
		v    int64
		to   *uint32
	}{{"peerASN", s.PeerASN, &p.PeerASN}, {"myASN", s.MyASN, &p.MyASN}} {
		if asn.v < 1 || asn.v > math.MaxUint32 {
			return p, fmt.Errorf("%s %d is out of range 1..4294967295", asn.name, asn.v)
		}
		*asn.to = uint32(asn.v)
	}
	if s.HoldTime != nil {
		p.HoldTime = s.HoldTime.Duration
		if p.HoldTime != 0 && p.HoldTime < 3*time.Second {
			return p, fmt.Errorf("holdTime %s must be 0 or at least 3s", p.HoldTime)
		}
	}
	if s.KeepaliveTime != nil {
		p.KeepaliveTime = s.KeepaliveTime.Duration
	} else {
		p.KeepaliveTime = p.HoldTime / 3
	}
	if p.HoldTime != 0 && p.KeepaliveTime >= p.HoldTime {
		return p, fmt.Errorf("keepaliveTime %s must be below holdTime %s", p.KeepaliveTime, p.HoldTime)
	}
	if s.RestartTime != nil {
		p.RestartTime = s.RestartTime.Duration
	}
	if b := s.BFD; b != nil {
		p.BFD = bfd.Config{DesiredMinTx: DefaultBFDInterval, RequiredMinRx: DefaultBFDInterval, DetectMult: DefaultBFDMultiplier}
		if b.TransmitInterval != nil {
			p.BFD.DesiredMinTx = b.TransmitInterval.Duration
		}
		if b.ReceiveInterval != nil {
			p.BFD.RequiredMinRx = b.ReceiveInterval.Duration
		}
		if b.DetectMultiplier != nil {
			if *b.DetectMultiplier < 2 || *b.DetectMultiplier > 255 {
				return p, fmt.Errorf("bfd.detectMultiplier %d is out of range 2..255", *b.DetectMultiplier)
			}
			p.BFD.DetectMult = uint8(*b.DetectMultiplier)
		}
		if p.BFD.DesiredMinTx < 10*time.Millisecond || p.BFD.RequiredMinRx < 10*time.Millisecond {
			return p, fmt.Errorf("bfd intervals must be at least 10ms")
		}
	}
	if ref := s.PasswordSecret; ref != nil {
		key := cmp.Or(ref.Key, DefaultPasswordKey)
		sec, ok := secrets[ref.Name]
		if !ok {
			return p, fmt.Errorf("password Secret %q not found in the forwarders' namespace", ref.Name)
		}
		pw, ok := sec.Data[key]
		if !ok || len(pw) == 0 {
			return p, fmt.Errorf("password Secret %q has no key %q", ref.Name, key)
		}
		if len(pw) > 80 {
			return p, fmt.Errorf("password in Secret %q is longer than the 80 bytes TCP MD5 allows", ref.Name)
		}
		p.Password = string(pw)
	}
	return p, nil
}

type bgpPool struct {
	obj    *lbv1.IPPool
	ranges []local.Range
}

func (p bgpPool) contains(ip netip.Addr) bool {
	return slices.ContainsFunc(p.ranges, func(r local.Range) bool { return r.Contains(ip) })
}

// bgpPools parses the pools announced by BGP; a pool whose addresses do not
// parse holds nothing (the allocator does not use it either).
func bgpPools(pools []lbv1.IPPool) []bgpPool {
	var out []bgpPool
	for i := range pools {
		p := &pools[i]
		if !p.Spec.AnnouncedByBGP() {
			continue
		}
		rs, err := local.ParseRanges(p.Spec.Addresses)
		if err != nil {
			continue
		}
		out = append(out, bgpPool{obj: p, ranges: rs})
	}
	return out
}

// advertisement is a BGPAdvertisement read for Plan.
type advertisement struct {
	peers            []string
	communities      []string
	largeCommunities []string
	localPref        uint32
	len4, len6       int
}

func (a advertisement) toPeer(name string) bool {
	return len(a.peers) == 0 || slices.Contains(a.peers, name)
}

// hostRoutes is the advertisement of a pool no BGPAdvertisement selects.
var hostRoutes = advertisement{len4: 32, len6: 128}

// advertisementsFor returns the advertisements that apply to an address of
// pool held by svc.
func advertisementsFor(pool *lbv1.IPPool, svc *corev1.Service, advs []lbv1.BGPAdvertisement) []advertisement {
	var out []advertisement
	applied, selected := model.BGPAdvertisementsFor(pool, svc, advs)
	for _, adv := range applied {
		s := &adv.Spec
		a := advertisement{peers: s.Peers, len4: 32, len6: 128}
		for _, c := range s.Communities {
			if _, err := ParseCommunity(c); err == nil {
				a.communities = append(a.communities, c)
			}
		}
		for _, c := range s.LargeCommunities {
			if _, err := ParseLargeCommunity(c); err == nil {
				a.largeCommunities = append(a.largeCommunities, c)
			}
		}
		if s.LocalPref != nil && *s.LocalPref >= 0 && *s.LocalPref <= math.MaxUint32 {
			a.localPref = uint32(*s.LocalPref)
		}
		if s.AggregationLength != nil && *s.AggregationLength >= 0 && *s.AggregationLength <= 32 {
			a.len4 = int(*s.AggregationLength)
		}
		if s.AggregationLengthV6 != nil && *s.AggregationLengthV6 >= 0 && *s.AggregationLengthV6 <= 128 {
			a.len6 = int(*s.AggregationLengthV6)
		}
		out = append(out, a)
	}
	if !selected {
		out = append(out, hostRoutes)
	}
	return out
}

// addRoute merges an address's route into the peer's: communities are
// united, the highest LOCAL_PREF wins.
func addRoute(routes map[string]map[netip.Prefix]*Route, peer string, ip netip.Addr, a advertisement) {
	bits := a.len4
	if ip.Is6() {
		bits = a.len6
	}
	prefix, _ := ip.Prefix(bits)
	if routes[peer] == nil {
		routes[peer] = map[netip.Prefix]*Route{}
	}
	r := routes[peer][prefix]
	if r == nil {
		r = &Route{Prefix: prefix}
		routes[peer][prefix] = r
	}
	r.Communities = union(r.Communities, a.communities)
	r.LargeCommunities = union(r.LargeCommunities, a.largeCommunities)
	r.LocalPref = max(r.LocalPref, a.localPref)
}

func union(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	return slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(a), b...))))
}

// ParseCommunity parses a standard community "ASN:value" (RFC 1997) into
// its 32-bit form.
func ParseCommunity(s string) (uint32, error) {
	hi, lo, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(hi, 10, 16)
	b, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: want ASN:value, each 0..65535", s)
	}
	return uint32(a)<<16 | uint32(b), nil
}

// ParseLargeCommunity parses "global:local1:local2" (RFC 8092).
func ParseLargeCommunity(s string) ([3]uint32, error) {
	var out [3]uint32
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return out, fmt.Errorf("large community %q: want global:local1:local2", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return out, fmt.Errorf("large community %q: part %d is not in 0..4294967295", s, i+1)
		}
		out[i] = uint32(v)
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
