package local

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// StateEstablished is the BGP session state (status.sessions[].state) in
// which a node's routes reach the peer.
const StateEstablished = "Established"

// BGPInputs are what BGPStatus decides from: the same objects the
// forwarders plan with (bgp.Plan), and the sessions they report.
type BGPInputs struct {
	// Labels are the Service's labels, for serviceSelectors.
	Labels map[string]string
	// Addresses are the addresses allocated to the Service.
	Addresses []netip.Addr
	// Serving are the nodes that may serve the Service: eligible, and for
	// externalTrafficPolicy Local holding a ready endpoint
	// (providers.LoadBalancer.Nodes).
	Serving []string
	// NodeLabels are the labels of the nodes eligible for load-balanced
	// traffic (model.EligibleNode), by name, for peer nodeSelectors. The
	// session entry of any other node (deleted, NotReady: its forwarder may
	// be dead and its entry stale) counts for nothing.
	NodeLabels     map[string]map[string]string
	Pools          []lbv1.IPPool
	Peers          []lbv1.BGPPeer
	Advertisements []lbv1.BGPAdvertisement
	// Sharers are the other Services that hold one of Addresses (the
	// shared-address annotation). The forwarders advertise a shared address
	// from a node to a peer when any of its holders qualifies there
	// (bgp.Plan), so a shared address is judged over all its holders and
	// every holder reports the same.
	Sharers []BGPSharer
}

// BGPSharer is another Service holding an address of the one judged.
type BGPSharer struct {
	Labels map[string]string
	// Addresses are the addresses it holds.
	Addresses []netip.Addr
	// Serving are the nodes that may serve it, as BGPInputs.Serving.
	Serving []string
}

// holder is one Service holding an address, as BGPStatus reads it.
type holder struct {
	svc     *corev1.Service
	serving map[string]bool
}

func newHolder(labels map[string]string, serving []string) holder {
	h := holder{svc: &corev1.Service{}, serving: make(map[string]bool, len(serving))}
	h.svc.Labels = labels
	for _, n := range serving {
		h.serving[n] = true
	}
	return h
}

// BGPResult is how a Service's addresses are advertised over BGP.
type BGPResult struct {
	// Status is nil when no address lies in an IPPool announced by BGP.
	Status *lbv1.BGPStatus
	// NotReady is set when an address of a pool announced by BGP only is
	// advertised by no node: nothing routes it to the cluster.
	NotReady *providers.Problem
	// Warning says the same of an address of an L2AndBGP pool, which L2
	// still answers.
	Warning string
}

// BGPStatus says, for each address of a Service in an IPPool announced by
// BGP, which BGPPeers receive it (model.BGPAdvertisementsFor, the rule
// bgp.Plan follows) and which nodes advertise it: a node that may serve the
// Service, selected by one of those peers, whose forwarder reports an
// Established session with it. An address shared with other Services
// (Sharers) is judged as the routers see it: a peer receives it when it
// does for one of its holders, and a node advertises it to that peer when
// it may serve that holder (MetalLB's speakers likewise advertise a shared
// address while any of its Services wants it). It is pure.
//
// An address of a pool announced by BGP only that no node advertises makes
// the Service not ready: NoBGPPeer when no BGPPeer receives it,
// NoBGPSession when no node has an Established session with one that does,
// NotAdvertised when sessions are up but on none of the nodes that serve
// the Service. A Service with no node to serve it (no ready endpoint for
// Local) is left to the Serving condition.
func BGPStatus(in BGPInputs) BGPResult {
	var res BGPResult
	self := newHolder(in.Labels, in.Serving)
	sharers := make([]holder, len(in.Sharers))
	for i, sh := range in.Sharers {
		sharers[i] = newHolder(sh.Labels, sh.Serving)
	}
	peers := slices.Clone(in.Peers)
	slices.SortFunc(peers, func(a, b lbv1.BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	for _, ip := range in.Addresses {
		pool := poolOf(in.Pools, ip)
		if pool == nil {
			continue
		}
		if res.Status == nil {
			res.Status = &lbv1.BGPStatus{}
		}
		holders := []holder{self}
		for i, sh := range in.Sharers {
			if slices.Contains(sh.Addresses, ip) {
				holders = append(holders, sharers[i])
			}
		}
		st := lbv1.BGPAddressStatus{Address: ip.String(), IPPool: pool.Name, Announce: pool.Spec.Announce}
		type advs struct {
			applied  []*lbv1.BGPAdvertisement
			selected bool
		}
		byHolder := make([]advs, len(holders))
		for i, h := range holders {
			byHolder[i].applied, byHolder[i].selected = model.BGPAdvertisementsFor(pool, h.svc, in.Advertisements)
		}
		established := false
		nodes := map[string]bool{}
		var serving []string
		for _, h := range holders {
			for n := range h.serving {
				if !slices.Contains(serving, n) {
					serving = append(serving, n)
				}
			}
		}
		slices.Sort(serving)
		for i := range peers {
			p := &peers[i]
			// The holders whose advertisements send ip to p.
			var via []holder
			for j, h := range holders {
				if receives(p, ip, byHolder[j].applied, byHolder[j].selected) {
					via = append(via, h)
				}
			}
			if len(via) == 0 {
				continue
			}
			st.Peers = append(st.Peers, p.Name)
			for _, s := range p.Status.Sessions {
				if s.State != StateEstablished {
					continue
				}
				labels, known := in.NodeLabels[s.Node]
				if !known || !model.Selects(p.Spec.NodeSelector, labels) {
					continue // a node gone, not eligible, or no longer selected: a stale entry
				}
				established = true
				if !nodes[s.Node] && slices.ContainsFunc(via, func(h holder) bool { return h.serving[s.Node] }) {
					nodes[s.Node] = true
					st.Nodes = append(st.Nodes, s.Node)
				}
			}
		}
		slices.Sort(st.Nodes)
		res.Status.Addresses = append(res.Status.Addresses, st)
		res.Status.AdvertisingNodes = append(res.Status.AdvertisingNodes, st.Nodes...)
		if len(st.Nodes) > 0 {
			continue
		}
		var p *providers.Problem
		switch {
		case len(st.Peers) == 0:
			p = &providers.Problem{Reason: providers.ReasonNoBGPPeer, Message: fmt.Sprintf(
				"address %s of IPPool %s is advertised to no BGPPeer: %s", ip, pool.Name, whyNoPeer(pool, ip, peers, byHolder[0].applied, byHolder[0].selected, in.Advertisements))}
		case !established:
			p = &providers.Problem{Reason: providers.ReasonNoBGPSession, Message: fmt.Sprintf(
				"address %s of IPPool %s is advertised to BGPPeer %s, but no node has an Established session with it (kubectl lb peers)",
				ip, pool.Name, strings.Join(st.Peers, ", "))}
		case len(serving) > 0:
			p = &providers.Problem{Reason: providers.ReasonNotAdvertised, Message: fmt.Sprintf(
				"address %s of IPPool %s is advertised by no node: the nodes that serve it (%s) have no Established session with BGPPeer %s",
				ip, pool.Name, strings.Join(shortList(serving), ", "), strings.Join(st.Peers, ", "))}
		default:
			continue
		}
		if pool.Spec.Announce == lbv1.AnnounceBGP {
			if res.NotReady == nil {
				res.NotReady = p
			}
		} else if res.Warning == "" {
			res.Warning = "BGP: " + p.Message + "; L2 still answers for it"
		}
	}
	if res.Status != nil {
		res.Status.AdvertisingNodes = slices.Compact(slices.Sorted(slices.Values(res.Status.AdvertisingNodes)))
	}
	return res
}

// poolOf returns the IPPool announced by BGP that holds ip, if any. A pool
// whose addresses do not parse holds nothing (as in bgp.Plan).
func poolOf(pools []lbv1.IPPool, ip netip.Addr) *lbv1.IPPool {
	for i := range pools {
		p := &pools[i]
		if !p.Spec.AnnouncedByBGP() {
			continue
		}
		rs, err := ParseRanges(p.Spec.Addresses)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(rs, func(r Range) bool { return r.Contains(ip) }) {
			return p
		}
	}
	return nil
}

// receives reports whether the BGPPeer gets ip's route: the peer is of ip's
// family and an advertisement that applies sends to it (every peer when no
// advertisement selects the pool).
func receives(p *lbv1.BGPPeer, ip netip.Addr, applied []*lbv1.BGPAdvertisement, selected bool) bool {
	a, err := netip.ParseAddr(p.Spec.Address)
	if err != nil || a.Unmap().Is4() != ip.Is4() {
		return false
	}
	if !selected {
		return true
	}
	return slices.ContainsFunc(applied, func(adv *lbv1.BGPAdvertisement) bool { return model.AdvertisedToPeer(&adv.Spec, p.Name) })
}

// whyNoPeer explains why no BGPPeer receives an address of pool.
func whyNoPeer(pool *lbv1.IPPool, ip netip.Addr, peers []lbv1.BGPPeer, applied []*lbv1.BGPAdvertisement, selected bool, advs []lbv1.BGPAdvertisement) string {
	family := "IPv4"
	if ip.Is6() {
		family = "IPv6"
	}
	if len(peers) == 0 {
		return "there is no BGPPeer"
	}
	if selected && len(applied) == 0 {
		return fmt.Sprintf("the BGPAdvertisements that select IPPool %s do not select this Service (serviceSelector)", pool.Name)
	}
	if selected {
		var missing []string
		for _, adv := range applied {
			for _, name := range adv.Spec.Peers {
				if !slices.ContainsFunc(peers, func(p lbv1.BGPPeer) bool { return p.Name == name }) && !slices.Contains(missing, name) {
					missing = append(missing, name)
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Sprintf("the BGPAdvertisements that select IPPool %s send it to BGPPeer %s, which does not exist, and to no other %s BGPPeer",
				pool.Name, strings.Join(missing, ", "), family)
		}
		return fmt.Sprintf("the BGPAdvertisements that select IPPool %s send it to no %s BGPPeer", pool.Name, family)
	}
	return fmt.Sprintf("no BGPPeer has an %s address", family)
}

// shortList keeps a message short at thousands of nodes.
func shortList(names []string) []string {
	const max = 5
	if len(names) <= max {
		return names
	}
	return append(slices.Clone(names[:max]), fmt.Sprintf("and %d more", len(names)-max))
}
