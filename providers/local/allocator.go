package local

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

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
	// Nodes counts the backends last ensured, for status.
	Nodes int
}

func (a *Allocation) equal(b *Allocation) bool {
	return a.Key == b.Key && slices.Equal(a.Addresses, b.Addresses) && a.SharingKey == b.SharingKey &&
		slices.Equal(a.Ports, b.Ports) && a.Nodes == b.Nodes
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

// Used reports whether any Service holds ip.
func (t *Table) Used(ip netip.Addr) bool { return len(t.byAddr[ip]) > 0 }

// usable reports whether d may hold ip: nobody else holds it, or every other
// holder shares d's non-empty sharing key and no port collides.
func (t *Table) usable(ip netip.Addr, d *providers.LoadBalancer) bool {
	self := d.Key.String()
	for _, h := range t.byAddr[ip] {
		if h == self {
			continue
		}
		other := t.byKey[h]
		if d.SharingKey == "" || other.SharingKey != d.SharingKey || portsCollide(other.Ports, d.Ports) {
			return false
		}
	}
	return true
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

func portsCollide(a, b []providers.Port) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Port == y.Port && x.Protocol == y.Protocol {
				return true
			}
		}
	}
	return false
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
	if len(d.RequestedIPs) > 0 {
		return planRequested(eligible, t, d, fams)
	}
	current := t.Get(d.Key)
	var out []netip.Addr
	for _, fam := range fams {
		ip, err := pickFamily(eligible, t, d, fam, current)
		if err != nil {
			return nil, err
		}
		out = append(out, ip)
	}
	return out, nil
}

func planRequested(eligible []*Pool, t *Table, d *providers.LoadBalancer, fams []string) ([]netip.Addr, error) {
	for _, ip := range d.RequestedIPs {
		if !slices.Contains(fams, familyOf(ip)) {
			return nil, providers.Configf("RequestedIPFamilyMismatch", "requested address %s is %s but the Service asks for %s", ip, familyOf(ip), strings.Join(fams, ","))
		}
		if !slices.ContainsFunc(eligible, func(p *Pool) bool { return p.Contains(ip) }) {
			return nil, providers.Configf("AddressNotInPool", "requested address %s is in no IPPool that selects this Service", ip)
		}
		if !t.usable(ip, d) {
			return nil, providers.Configf("AddressInUse", "requested address %s is in use by another Service (sharing needs the same %s key and distinct ports)", ip, "lb.portico.dev/allow-shared-ip")
		}
	}
	return slices.Clone(d.RequestedIPs), nil
}

func pickFamily(eligible []*Pool, t *Table, d *providers.LoadBalancer, fam string, current *Allocation) (netip.Addr, error) {
	// Keep what the Service holds while it is still in some selecting pool
	// and still shareable: addresses never move without a reason.
	if current != nil {
		for _, ip := range current.Addresses {
			if familyOf(ip) == fam && t.usable(ip, d) && slices.ContainsFunc(eligible, func(p *Pool) bool { return p.Contains(ip) }) {
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
	// on one address.
	if d.SharingKey != "" {
		var shared []netip.Addr
		for ip := range t.byAddr {
			if familyOf(ip) == fam && t.sharedBy(ip, d.Key.String()) && t.usable(ip, d) &&
				slices.ContainsFunc(candidates, func(p *Pool) bool { return p.Contains(ip) }) {
				shared = append(shared, ip)
			}
		}
		if len(shared) > 0 {
			slices.SortFunc(shared, netip.Addr.Compare)
			return shared[0], nil
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
