package local

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// Pool is a parsed IPPool.
type Pool struct {
	Name       string
	Ranges     []Range
	AutoAssign bool
	AvoidBuggy bool
	// Services and Namespaces select the Services the pool serves; nil
	// selects everything.
	Services   labels.Selector
	Namespaces labels.Selector
	// AcrossNamespaces lets a sharing key join Services of different
	// namespaces on this pool's addresses.
	AcrossNamespaces bool
}

// Contains reports whether a is one of the pool's usable addresses.
func (p *Pool) Contains(a netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

func (p *Pool) selects(d *providers.LoadBalancer) bool {
	if p.Services != nil && !p.Services.Matches(labels.Set(d.Labels)) {
		return false
	}
	if p.Namespaces != nil && !p.Namespaces.Matches(labels.Set(d.NamespaceLabels)) {
		return false
	}
	return true
}

// Allocation is what one Service holds: its addresses and what decides
// whether another Service may share them.
type Allocation struct {
	Key        providers.Key
	Addresses  []netip.Addr
	SharingKey string
	Ports      []providers.Port
	// TrafficPolicy and Backend decide, with the key and the ports, whether
	// another Service may join: Backend is the pod selector of a Service
	// with TrafficPolicyLocal (see BackendKey), "" otherwise.
	TrafficPolicy providers.TrafficPolicy
	Backend       string
	// Nodes counts the backends last ensured, for status.
	Nodes int
}

func (a *Allocation) equal(b *Allocation) bool {
	return a.Key == b.Key && slices.Equal(a.Addresses, b.Addresses) && a.SharingKey == b.SharingKey &&
		slices.Equal(a.Ports, b.Ports) && a.TrafficPolicy == b.TrafficPolicy && a.Backend == b.Backend && a.Nodes == b.Nodes
}

// BackendKey is what two Services with externalTrafficPolicy Local must have
// in common to share an address: their pod selector, rendered canonically.
// Equal selectors select the same pods, so the node holding their endpoints
// serves all of them. It is "" for other policies (any node serves those)
// and for a Local Service without a selector, whose endpoints Portico cannot
// compare; such a Service shares with nobody.
func BackendKey(policy providers.TrafficPolicy, selector map[string]string) string {
	if policy != providers.TrafficPolicyLocal || len(selector) == 0 {
		return ""
	}
	return labels.Set(selector).String()
}

// allocationFor is what d would hold on addrs.
func allocationFor(d *providers.LoadBalancer, addrs []netip.Addr) *Allocation {
	policy := d.TrafficPolicy
	if policy == "" {
		policy = providers.TrafficPolicyCluster
	}
	return &Allocation{Key: d.Key, Addresses: addrs, SharingKey: d.SharingKey, Ports: slices.Clone(d.Ports),
		TrafficPolicy: policy, Backend: BackendKey(policy, d.Selector), Nodes: len(d.Nodes)}
}

// Conflict explains why a Service holding want may not share an address
// with other, or returns "" when it may. The rule (MetalLB's, with namespace
// scoping): both carry the same non-empty sharing key, they are in the same
// namespace unless acrossNamespaces, no protocol/port collides, their
// externalTrafficPolicy is the same and, for Local, they select the same
// pods. One address is announced by one node, so Services that would need
// different nodes must not share it. The rule is symmetric.
func Conflict(other, want *Allocation, acrossNamespaces bool) string {
	name := other.Key.Namespace + "/" + other.Key.Name
	switch {
	case want.SharingKey == "" || other.SharingKey == "":
		return fmt.Sprintf("Service %s holds it and sharing needs the same %s key on both Services", name, model.AnnotationAllowSharedIP)
	case other.SharingKey != want.SharingKey:
		return fmt.Sprintf("Service %s holds it with %s key %q, not %q", name, model.AnnotationAllowSharedIP, other.SharingKey, want.SharingKey)
	case other.Key.Namespace != want.Key.Namespace && !acrossNamespaces:
		return fmt.Sprintf("Service %s in another namespace holds it, and its IPPool does not set allowSharingAcrossNamespaces", name)
	}
	if p, ok := collision(other.Ports, want.Ports); ok {
		return fmt.Sprintf("Service %s already uses port %d/%s on it", name, p.Port, p.Protocol)
	}
	switch {
	case other.TrafficPolicy != want.TrafficPolicy:
		return fmt.Sprintf("Service %s holds it with externalTrafficPolicy %s, this Service has %s; one node announces an address, so sharing Services need the same policy",
			name, other.TrafficPolicy, want.TrafficPolicy)
	case want.TrafficPolicy == providers.TrafficPolicyLocal && (other.Backend == "" || want.Backend == ""):
		return fmt.Sprintf("Service %s holds it; Services with externalTrafficPolicy Local share an address only when both have the same non-empty selector", name)
	case other.Backend != want.Backend:
		return fmt.Sprintf("Service %s holds it with selector %q, this Service has %q; with externalTrafficPolicy Local sharing Services must select the same pods, so that one node serves them all",
			name, other.Backend, want.Backend)
	}
	return ""
}

// portOnly reports whether a Conflict message is about a port collision
// alone, which sharing Services resolve by taking separate addresses.
func portOnly(other, want *Allocation, acrossNamespaces bool) bool {
	_, collide := collision(other.Ports, want.Ports)
	if !collide {
		return false
	}
	o := *other
	o.Ports = nil
	return Conflict(&o, want, acrossNamespaces) == ""
}

// Table is the allocation state: which Service holds which address. It is
// not safe for concurrent use; the Provider guards it.
type Table struct {
	byKey  map[string]*Allocation
	byAddr map[netip.Addr][]string
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{byKey: map[string]*Allocation{}, byAddr: map[netip.Addr][]string{}}
}

// Get returns the allocation of key, or nil.
func (t *Table) Get(key providers.Key) *Allocation { return t.byKey[key.String()] }

// Put records a, replacing what key held. It returns the addresses no
// Service holds any more.
func (t *Table) Put(a *Allocation) (freed []netip.Addr) {
	freed = t.Delete(a.Key)
	k := a.Key.String()
	t.byKey[k] = a
	for _, ip := range a.Addresses {
		t.byAddr[ip] = append(t.byAddr[ip], k)
		freed = slices.DeleteFunc(freed, func(f netip.Addr) bool { return f == ip })
	}
	return freed
}

// Delete removes key's allocation and returns the addresses it freed.
func (t *Table) Delete(key providers.Key) (freed []netip.Addr) {
	k := key.String()
	old := t.byKey[k]
	if old == nil {
		return nil
	}
	delete(t.byKey, k)
	for _, ip := range old.Addresses {
		holders := slices.DeleteFunc(t.byAddr[ip], func(h string) bool { return h == k })
		if len(holders) == 0 {
			delete(t.byAddr, ip)
			freed = append(freed, ip)
		} else {
			t.byAddr[ip] = holders
		}
	}
	return freed
}

// All returns every allocation, sorted by key.
func (t *Table) All() []*Allocation {
	out := make([]*Allocation, 0, len(t.byKey))
	for _, a := range t.byKey {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// Holders returns the keys of the Services that hold ip.
func (t *Table) Holders(ip netip.Addr) []providers.Key {
	var out []providers.Key
	for _, k := range t.byAddr[ip] {
		out = append(out, t.byKey[k].Key)
	}
	return out
}

// Used reports whether any Service holds ip.
func (t *Table) Used(ip netip.Addr) bool { return len(t.byAddr[ip]) > 0 }

// conflict explains why want may not hold ip ("" when it may): nobody else
// holds it, or Conflict allows sharing with every other holder.
func (t *Table) conflict(pools []Pool, ip netip.Addr, want *Allocation) string {
	self := want.Key.String()
	across := acrossNamespaces(pools, ip)
	for _, h := range t.byAddr[ip] {
		if h == self {
			continue
		}
		if why := Conflict(t.byKey[h], want, across); why != "" {
			return why
		}
	}
	return ""
}

// acrossNamespaces reports whether every pool that contains ip (and there
// is one) allows sharing across namespaces.
func acrossNamespaces(pools []Pool, ip netip.Addr) bool {
	found := false
	for i := range pools {
		if pools[i].Contains(ip) {
			if !pools[i].AcrossNamespaces {
				return false
			}
			found = true
		}
	}
	return found
}

// sharedBy reports whether another Service holds ip.
func (t *Table) sharedBy(ip netip.Addr, self string) bool {
	for _, h := range t.byAddr[ip] {
		if h != self {
			return true
		}
	}
	return false
}

func collision(a, b []providers.Port) (providers.Port, bool) {
	for _, x := range a {
		for _, y := range b {
			if x.Port == y.Port && x.Protocol == y.Protocol {
				return x, true
			}
		}
	}
	return providers.Port{}, false
}

// Families returns the address families d needs, primary first.
func Families(d *providers.LoadBalancer) []string {
	fams := d.IPFamilies
	if len(fams) == 0 {
		fams = []string{"IPv4"}
	}
	if !d.DualStack {
		fams = fams[:1]
	}
	return fams
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// Plan decides which addresses d should hold, given the pools and the
// current table. It is pure: it changes nothing. Errors are
// *providers.ConfigError values the user can act on.
func Plan(pools []Pool, t *Table, d *providers.LoadBalancer) ([]netip.Addr, error) {
	var eligible []*Pool
	for i := range pools {
		if pools[i].selects(d) {
			eligible = append(eligible, &pools[i])
		}
	}
	fams := Families(d)
	want := allocationFor(d, nil)
	if len(d.RequestedIPs) > 0 {
		return planRequested(pools, eligible, t, d, want, fams)
	}
	current := t.Get(d.Key)
	var out []netip.Addr
	for _, fam := range fams {
		ip, err := pickFamily(pools, eligible, t, want, fam, current)
		if err != nil {
			return nil, err
		}
		out = append(out, ip)
	}
	return out, nil
}

// Lost returns the addresses d holds in t that no pool selecting d
// contains any more.
func Lost(pools []Pool, t *Table, d *providers.LoadBalancer) []netip.Addr {
	current := t.Get(d.Key)
	if current == nil {
		return nil
	}
	var lost []netip.Addr
	for _, ip := range current.Addresses {
		if !slices.ContainsFunc(pools, func(p Pool) bool { return p.selects(d) && p.Contains(ip) }) {
			lost = append(lost, ip)
		}
	}
	return lost
}

func planRequested(pools []Pool, eligible []*Pool, t *Table, d *providers.LoadBalancer, want *Allocation, fams []string) ([]netip.Addr, error) {
	for _, ip := range d.RequestedIPs {
		if !slices.Contains(fams, familyOf(ip)) {
			return nil, providers.Configf("RequestedIPFamilyMismatch", "requested address %s is %s but the Service asks for %s", ip, familyOf(ip), strings.Join(fams, ","))
		}
		if !slices.ContainsFunc(eligible, func(p *Pool) bool { return p.Contains(ip) }) {
			return nil, providers.Configf("AddressNotInPool", "requested address %s is in no IPPool that selects this Service", ip)
		}
		if why := t.conflict(pools, ip, want); why != "" {
			return nil, providers.Configf("AddressInUse", "requested address %s cannot be shared: %s", ip, why)
		}
	}
	return slices.Clone(d.RequestedIPs), nil
}

func pickFamily(pools []Pool, eligible []*Pool, t *Table, want *Allocation, fam string, current *Allocation) (netip.Addr, error) {
	// Keep what the Service holds while it is still in some selecting pool
	// and still shareable: addresses never move without a reason.
	if current != nil {
		for _, ip := range current.Addresses {
			if familyOf(ip) == fam && t.conflict(pools, ip, want) == "" && slices.ContainsFunc(eligible, func(p *Pool) bool { return p.Contains(ip) }) {
				return ip, nil
			}
		}
	}
	var names []string
	var candidates []*Pool
	for _, p := range eligible {
		if !p.AutoAssign || !slices.ContainsFunc(p.Ranges, func(r Range) bool { return familyOf(r.First) == fam }) {
			continue
		}
		candidates = append(candidates, p)
		names = append(names, p.Name)
	}
	if len(candidates) == 0 {
		return netip.Addr{}, providers.Configf("NoPool", "no IPPool with autoAssign and %s addresses selects this Service", fam)
	}
	// Join a Service that shares our key first, so sharing Services end up
	// on one address. A partner (same key, in scope) that may not share for
	// a reason other than a port collision is a mistake the user must fix:
	// taking a separate address would silently split what the key joins.
	if want.SharingKey != "" {
		var shared []netip.Addr
		var refusals []string
		for ip, holders := range t.byAddr {
			if familyOf(ip) != fam || !t.sharedBy(ip, want.Key.String()) ||
				!slices.ContainsFunc(candidates, func(p *Pool) bool { return p.Contains(ip) }) {
				continue
			}
			why := t.conflict(pools, ip, want)
			if why == "" {
				shared = append(shared, ip)
				continue
			}
			across := acrossNamespaces(pools, ip)
			for _, h := range holders {
				other := t.byKey[h]
				if h == want.Key.String() || other.SharingKey != want.SharingKey ||
					(other.Key.Namespace != want.Key.Namespace && !across) || portOnly(other, want, across) {
					continue
				}
				if w := Conflict(other, want, across); w != "" {
					refusals = append(refusals, fmt.Sprintf("%s: %s", ip, w))
				}
			}
		}
		if len(shared) > 0 {
			slices.SortFunc(shared, netip.Addr.Compare)
			return shared[0], nil
		}
		if len(refusals) > 0 {
			slices.Sort(refusals)
			return netip.Addr{}, providers.Configf("SharingConflict", "cannot share an address under %s key %q: %s", model.AnnotationAllowSharedIP, want.SharingKey, strings.Join(slices.Compact(refusals), "; "))
		}
	}
	for _, p := range candidates {
		for _, r := range p.Ranges {
			if familyOf(r.First) != fam {
				continue
			}
			if ip, ok := lowestFree(r, p.AvoidBuggy, t); ok {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, &providers.ConfigError{Reason: "PoolExhausted",
		Message: fmt.Sprintf("no free %s address left in IPPool %s", fam, strings.Join(names, ", "))}
}

func lowestFree(r Range, avoidBuggy bool, t *Table) (netip.Addr, bool) {
	for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
		if (avoidBuggy && Buggy(a)) || t.Used(a) {
			continue
		}
		return a, true
	}
	return netip.Addr{}, false
}
