package bgp

import (
	"maps"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/model"
)

// Incremental keeps one node's Plan up to date Service by Service, so a
// change to one Service costs one Service's planning, not every Service's.
//
// Plan stays the single rule: a Service's contribution is what Plan's own
// steps (planner: the shared inputs read once; planner.service: one
// Service) give for that Service alone with its EndpointSlices, and the routes of a prefix are the
// merge (addRoute's: communities united, highest LOCAL_PREF) of the
// contributions of every Service holding it. Plan's only cross-Service step
// is that merge, so the result equals Plan over all Services
// (TestIncrementalEqualsPlan checks it over random sequences of changes).
// It is not safe for concurrent use.
type Incremental struct {
	// pl is Plan's reading of the shared inputs (peers with their
	// settings and Error, pools, advertisements).
	pl *planner
	// bySvc is each Service's contribution: peer -> prefix -> route.
	bySvc map[string]map[string]map[netip.Prefix]Route
	// holders: peer -> prefix -> keys of the Services contributing it.
	holders map[string]map[netip.Prefix]map[string]bool
	// routes is the merged result: peer -> prefix -> route.
	routes map[string]map[netip.Prefix]Route
	// Planned counts the Services planned since creation (tests use it to
	// see that an update plans one Service).
	Planned int
}

// Delta is what changed in a node's plan: peer -> prefix -> route, nil for
// a prefix withdrawn.
type Delta map[string]map[netip.Prefix]*Route

// Reset plans every Service of in from scratch.
func (inc *Incremental) Reset(in Inputs) {
	inc.pl = newPlanner(in)
	inc.bySvc = map[string]map[string]map[netip.Prefix]Route{}
	inc.holders = map[string]map[netip.Prefix]map[string]bool{}
	inc.routes = map[string]map[netip.Prefix]Route{}
	eps := slicesByService(in.EndpointSlices)
	for _, svc := range in.Services {
		key := svc.Namespace + "/" + svc.Name
		inc.Update(key, svc, eps[key])
	}
}

// slicesByService groups EndpointSlices by "namespace/service".
func slicesByService(eps []discoveryv1.EndpointSlice) map[string][]discoveryv1.EndpointSlice {
	out := map[string][]discoveryv1.EndpointSlice{}
	for _, es := range eps {
		key := es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName]
		out[key] = append(out[key], es)
	}
	return out
}

// Update replans the Service key: svc is the Service (nil when it is gone
// or not served through the local class) and eps its EndpointSlices. It
// returns the prefixes whose merged route changed.
func (inc *Incremental) Update(key string, svc *corev1.Service, eps []discoveryv1.EndpointSlice) Delta {
	contrib := map[string]map[netip.Prefix]Route{}
	if svc != nil {
		inc.Planned++
		var endpoints map[string][]string
		if model.LocalTraffic(svc) {
			endpoints = model.EndpointNodes(eps)
		}
		routes := map[string]map[netip.Prefix]*Route{}
		inc.pl.service(svc, endpoints, routes)
		for name, rs := range routes {
			contrib[name] = map[netip.Prefix]Route{}
			for p, r := range rs {
				contrib[name][p] = *r
			}
		}
	}
	old := inc.bySvc[key]
	if len(contrib) == 0 {
		delete(inc.bySvc, key)
	} else {
		inc.bySvc[key] = contrib
	}
	delta := Delta{}
	touch := func(peer string, p netip.Prefix) {
		hs := inc.holders[peer][p]
		_, had := contrib[peer][p]
		if had {
			if inc.holders[peer] == nil {
				inc.holders[peer] = map[netip.Prefix]map[string]bool{}
			}
			if hs == nil {
				hs = map[string]bool{}
				inc.holders[peer][p] = hs
			}
			hs[key] = true
		} else if hs != nil {
			delete(hs, key)
		}
		var merged *Route
		for _, k := range slices.Sorted(maps.Keys(hs)) {
			r := inc.bySvc[k][peer][p]
			if merged == nil {
				merged = &Route{Prefix: p}
			}
			merged.Communities = union(merged.Communities, r.Communities)
			merged.LargeCommunities = union(merged.LargeCommunities, r.LargeCommunities)
			merged.LocalPref = max(merged.LocalPref, r.LocalPref)
		}
		cur, ok := inc.routes[peer][p]
		switch {
		case merged == nil && !ok:
			return
		case merged == nil:
			delete(inc.routes[peer], p)
			delete(inc.holders[peer], p)
		case ok && sameRoute(cur, *merged):
			return
		default:
			if inc.routes[peer] == nil {
				inc.routes[peer] = map[netip.Prefix]Route{}
			}
			inc.routes[peer][p] = *merged
		}
		if delta[peer] == nil {
			delta[peer] = map[netip.Prefix]*Route{}
		}
		delta[peer][p] = merged
	}
	for peer, rs := range old {
		for p := range rs {
			if _, still := contrib[peer][p]; !still {
				touch(peer, p)
			}
		}
	}
	for peer, rs := range contrib {
		for p := range rs {
			touch(peer, p)
		}
	}
	return delta
}

// Plans returns the whole plan, as Plan over every Service would.
func (inc *Incremental) Plans() map[string]PeerPlan {
	out := map[string]PeerPlan{}
	for name, pp := range inc.pl.peers {
		for _, r := range inc.routes[name] {
			pp.Routes = append(pp.Routes, r)
		}
		sort.Slice(pp.Routes, func(i, j int) bool { return prefixLess(pp.Routes[i].Prefix, pp.Routes[j].Prefix) })
		out[name] = pp
	}
	return out
}

// Peers returns every planned peer's settings and Error, without routes.
func (inc *Incremental) Peers() map[string]PeerPlan { return inc.pl.peers }
