package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
	"sigs.k8s.io/knftables"
)

// ErrNotSynced is returned by Update and Delete before the first Sync.
var ErrNotSynced = errors.New("dataplane not synced yet")

// Options configure a Dataplane.
type Options struct {
	// Table is the name of Portico's table in the inet family
	// (default "portico").
	Table string
	// NodeName is this node; externalTrafficPolicy Local sends only to
	// endpoints whose nodeName equals it.
	NodeName string
	// NodeIPs restrict NodePorts (kube-proxy-free mode) to these addresses;
	// empty means every local address but loopback.
	NodeIPs []netip.Addr
	// KubeProxyFree makes Portico also serve the Services' NodePorts, for
	// clusters without kube-proxy. Leave it off where kube-proxy runs.
	KubeProxyFree bool
	// MasqueradeMark is the packet-mark bit that asks for masquerading
	// (default 0x4000, the bit kube-proxy uses for the same meaning).
	MasqueradeMark uint32
	// NFT replaces the real nftables interface (knftables.NewFake in unit
	// tests). Nil means knftables.New(inet, Table).
	NFT knftables.Interface
	// ConntrackCleaner, if set, is told the UDP/SCTP endpoints that stop
	// taking traffic, so their stale conntrack entries can be flushed
	// (as kube-proxy does). NewConntrackCleaner gives a netlink one.
	ConntrackCleaner func(ctx context.Context, gone []RemovedEndpoint) error
}

// RemovedEndpoint is an endpoint of a connectionless protocol that no
// longer receives traffic for a Service address.
type RemovedEndpoint struct {
	Protocol Protocol
	Addr     netip.Addr
	Port     uint16
}

// Dataplane owns Portico's nftables table. Its methods are safe for
// concurrent use; transactions are serialized.
type Dataplane struct {
	nft     knftables.Interface
	gen     generator
	cleaner func(ctx context.Context, gone []RemovedEndpoint) error

	mu     sync.Mutex
	synced bool
	state  map[ServiceKey]*objects
	claims claims
	svcs   map[ServiceKey]Service
	// dispatch are the shared dispatch chains in the table.
	dispatch map[string]bool
	// counted are the addresses the byte counters were written for.
	counted []netip.Addr
}

// New prepares a Dataplane; it changes nothing in the kernel until Sync.
func New(opts Options) (*Dataplane, error) {
	if opts.Table == "" {
		opts.Table = defaultTable
	}
	if opts.MasqueradeMark == 0 {
		opts.MasqueradeMark = defaultMasqueradeM
	}
	nft := opts.NFT
	if nft == nil {
		var err error
		nft, err = knftables.New(knftables.InetFamily, opts.Table)
		if err != nil {
			return nil, fmt.Errorf("opening nftables table inet %s: %w", opts.Table, err)
		}
	}
	return &Dataplane{
		nft: nft,
		gen: generator{
			nodeName:      opts.NodeName,
			kubeProxyFree: opts.KubeProxyFree,
			nodeIPs:       opts.NodeIPs,
			mark:          fmt.Sprintf("0x%x", opts.MasqueradeMark),
		},
		cleaner:  opts.ConntrackCleaner,
		state:    map[ServiceKey]*objects{},
		claims:   claims{},
		svcs:     map[ServiceKey]Service{},
		dispatch: map[string]bool{},
	}, nil
}

// Sync programs exactly services, replacing whatever Portico's table held,
// in one transaction: the full resync at start. Affinity sets that survive
// keep their entries. A Service that cannot be programmed is left out and
// reported in the returned error; the others are programmed.
func (d *Dataplane) Sync(ctx context.Context, services []Service) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	log := logr.FromContextOrDiscard(ctx)

	desired := map[ServiceKey]*objects{}
	svcs := map[ServiceKey]Service{}
	var errs []error
	for i := range services {
		o, err := d.gen.serviceObjects(&services[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		desired[services[i].Key] = o
		svcs[services[i].Key] = services[i]
	}

	existing, err := d.nft.ListAll(ctx)
	if err != nil && !knftables.IsNotFound(err) {
		return fmt.Errorf("listing nftables table: %w", err)
	}

	cl := claims{}
	for key, o := range desired {
		_, _, _ = cl.set(key, nil, o)
	}
	for k := range cl {
		if len(cl[k]) > 1 {
			w, _, _ := cl.winner(k)
			log.Info("Services claim the same address and port; the first by name wins", "key", k.key, "winner", w.String(), "claimants", len(cl[k]))
		}
	}
	var counters []*knftables.Counter
	if existing != nil {
		if counters, err = d.listCounters(ctx); err != nil {
			return err
		}
	}
	b := d.gen.base()
	tx := d.nft.NewTransaction()
	writeFull(tx, b, desired, cl, existing)
	counted := countedAddrs(svcs)
	writeCounters(tx, counted, counters)
	log.V(1).Info("Syncing nftables table", "services", len(desired), "operations", tx.NumOperations())
	if err := d.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("full sync of %d services: %w", len(desired), err)
	}
	old := d.svcs
	d.state, d.claims, d.svcs, d.synced = desired, cl, svcs, true
	d.counted = counted
	d.dispatch = map[string]bool{}
	for _, o := range desired {
		for name := range o.dispatch {
			d.dispatch[name] = true
		}
	}
	if d.cleaner != nil {
		var gone []RemovedEndpoint
		for key, prev := range old {
			cur := svcs[key]
			gone = append(gone, d.removedEndpoints(&prev, &cur)...)
		}
		if err := d.cleaner(ctx, gone); err != nil {
			errs = append(errs, fmt.Errorf("flushing conntrack: %w", err))
		}
	}
	return errors.Join(errs...)
}

// writeFull writes the whole table: the skeleton, every Service, and the
// removal of anything found in the table that is no longer wanted.
func writeFull(tx *knftables.Transaction, b *base, desired map[ServiceKey]*objects, cl claims, existing map[string][]string) {
	all := newObjects()
	for _, o := range desired {
		for name, rules := range o.chains {
			all.chains[name] = rules
		}
		for name, spec := range o.sets {
			all.sets[name] = spec
		}
		for name, spec := range o.dispatch {
			all.chains[name] = spec.rules()
		}
	}
	for k := range cl {
		_, v, _ := cl.winner(k)
		all.elements[k] = v
	}
	baseChains, baseSets, baseMaps := b.names()

	b.add(tx)
	for _, name := range sortedKeys(all.sets) {
		// Added, not flushed: surviving affinity entries stay.
		tx.Add(affinitySet(name, all.sets[name]))
	}
	for _, name := range sortedKeys(all.chains) {
		tx.Add(&knftables.Chain{Name: name})
		tx.Flush(&knftables.Chain{Name: name})
	}
	var staleChains []string
	for _, name := range existing["chain"] {
		if !baseChains[name] && all.chains[name] == nil && name != chainBytesIn && name != chainBytesOut {
			staleChains = append(staleChains, name)
			tx.Flush(&knftables.Chain{Name: name})
		}
	}
	for _, name := range staleChains {
		tx.Delete(&knftables.Chain{Name: name})
	}
	for _, name := range existing["set"] {
		if _, ok := all.sets[name]; !ok && !baseSets[name] {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
	for _, name := range existing["map"] {
		if !baseMaps[name] {
			tx.Delete(&knftables.Map{Name: name})
		}
	}
	b.addRules(tx)
	for _, name := range sortedKeys(all.chains) {
		for _, r := range all.chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	for _, k := range sortedElems(all.elements) {
		tx.Add(element(k, all.elements[k]))
	}
}

// Update programs one Service (new or changed) in one transaction that
// touches only that Service's chains, sets and map elements. On error the
// kernel is unchanged (transactions are atomic); the caller retries or
// resyncs.
func (d *Dataplane) Update(ctx context.Context, svc Service) error {
	return d.Apply(ctx, []Service{svc}, nil)
}

// Delete removes one Service's objects in one transaction.
func (d *Dataplane) Delete(ctx context.Context, key ServiceKey) error {
	return d.Apply(ctx, nil, []ServiceKey{key})
}

// change is one Service's part of an Apply: its objects, nil to remove it.
type change struct {
	key ServiceKey
	o   *objects
	svc Service
}

// Apply programs updates (new or changed Services) and removes deletes in
// one transaction that touches only those Services' chains, sets and map
// elements. A burst of changes costs one nft run, not one per Service:
// every run makes nft read the table, so per-Service runs cost time that
// grows with the table and fell behind a burst of a thousand Services by
// minutes (issue 17), while the routers were already sending their traffic.
// A Service that cannot be programmed is left out and reported in the
// returned error; the others are programmed. On a failed run the kernel
// and this Dataplane are unchanged; the caller retries or resyncs.
func (d *Dataplane) Apply(ctx context.Context, updates []Service, deletes []ServiceKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.synced {
		return ErrNotSynced
	}
	var errs []error
	var changes []change
	for i := range updates {
		o, err := d.gen.serviceObjects(&updates[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		changes = append(changes, change{key: updates[i].Key, o: o, svc: updates[i]})
	}
	for _, key := range deletes {
		if _, ok := d.state[key]; ok {
			changes = append(changes, change{key: key, svc: Service{Key: key}})
		}
	}
	if len(changes) == 0 {
		return errors.Join(errs...)
	}
	if err := d.apply(ctx, changes); err != nil {
		return errors.Join(append(errs, err)...)
	}
	var gone []RemovedEndpoint
	for i := range changes {
		c := &changes[i]
		prev := d.svcs[c.key]
		if c.o == nil {
			delete(d.svcs, c.key)
		} else {
			d.svcs[c.key] = c.svc
		}
		if d.cleaner != nil {
			gone = append(gone, d.removedEndpoints(&prev, &c.svc)...)
		}
	}
	errs = append(errs, d.syncCounters(ctx))
	if len(gone) > 0 {
		if err := d.cleaner(ctx, gone); err != nil {
			errs = append(errs, fmt.Errorf("flushing conntrack for %d services: %w", len(changes), err))
		}
	}
	return errors.Join(errs...)
}

// apply writes changes, in order, into one transaction and commits the
// claims, dispatch chains and objects once it ran.
func (d *Dataplane) apply(ctx context.Context, changes []change) error {
	affected := map[elemKey]bool{}
	for _, c := range changes {
		for _, x := range []*objects{d.state[c.key], c.o} {
			if x != nil {
				for k := range x.elements {
					affected[k] = true
				}
			}
		}
	}
	// Work on copies of the affected claims and of the changed Services'
	// objects; commit them only when the transaction succeeded.
	cl := d.claims.clone(affected)
	state := map[ServiceKey]*objects{}
	current := func(key ServiceKey) *objects {
		if o, ok := state[key]; ok {
			return o
		}
		return d.state[key]
	}
	log := logr.FromContextOrDiscard(ctx)
	tx := d.nft.NewTransaction()
	newDispatch := map[string]bool{}
	for _, c := range changes {
		old := current(c.key)
		before, after, lost := cl.set(c.key, old, c.o)
		for _, k := range lost {
			w, _, _ := cl.winner(k)
			log.Info("Address and port already belong to another Service; not programmed", "service", c.key.String(), "key", k.key, "owner", w.String())
		}
		if c.o != nil {
			var added []string
			for _, name := range sortedKeys(c.o.dispatch) {
				if !d.dispatch[name] && !newDispatch[name] {
					added = append(added, name)
					newDispatch[name] = true
					tx.Add(&knftables.Chain{Name: name})
				}
			}
			for _, name := range added {
				for _, r := range c.o.dispatch[name].rules() {
					tx.Add(&knftables.Rule{Chain: name, Rule: r})
				}
			}
		}
		writeDiff(tx, old, c.o, before, after)
		state[c.key] = c.o
	}
	if tx.NumOperations() > 0 {
		log.V(2).Info("Updating nftables", "services", len(changes), "operations", tx.NumOperations())
		if err := d.nft.Run(ctx, tx); err != nil {
			if len(changes) == 1 {
				return fmt.Errorf("programming service %s: %w", changes[0].key, err)
			}
			return fmt.Errorf("programming %d services: %w", len(changes), err)
		}
	}
	for name := range newDispatch {
		d.dispatch[name] = true
	}
	for k := range affected {
		if m, ok := cl[k]; ok {
			d.claims[k] = m
		} else {
			delete(d.claims, k)
		}
	}
	for key, o := range state {
		if o == nil {
			delete(d.state, key)
		} else {
			d.state[key] = o
		}
	}
	return nil
}

// removedEndpoints lists the UDP/SCTP endpoints prev sent to and cur does
// not: their conntrack entries would keep steering a client's datagrams to
// a dead endpoint.
func (d *Dataplane) removedEndpoints(prev, cur *Service) []RemovedEndpoint {
	live := map[RemovedEndpoint]bool{}
	for _, s := range []*Service{cur} {
		for i := range s.Ports {
			for _, v6 := range []bool{false, true} {
				for _, ep := range s.usable(&s.Ports[i], d.gen.nodeName, v6) {
					live[RemovedEndpoint{s.Ports[i].Protocol, ep.Addr, ep.Port}] = true
				}
			}
		}
	}
	var gone []RemovedEndpoint
	seen := map[RemovedEndpoint]bool{}
	for i := range prev.Ports {
		p := &prev.Ports[i]
		if p.Protocol == TCP {
			continue
		}
		for _, v6 := range []bool{false, true} {
			for _, ep := range prev.usable(p, d.gen.nodeName, v6) {
				r := RemovedEndpoint{p.Protocol, ep.Addr, ep.Port}
				if !live[r] && !seen[r] {
					seen[r] = true
					gone = append(gone, r)
				}
			}
		}
	}
	return gone
}

// Cleanup deletes Portico's table and everything in it. It is safe to call
// when the table does not exist.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	tx := d.nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := d.nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
		return fmt.Errorf("deleting nftables table: %w", err)
	}
	d.state, d.claims, d.svcs, d.synced = map[ServiceKey]*objects{}, claims{}, map[ServiceKey]Service{}, false
	d.dispatch = map[string]bool{}
	d.counted = nil
	return nil
}

// Counts is what Portico's table holds for its Services.
type Counts struct {
	Services, Chains, Rules, Sets, Elements int
}

// Counts returns what the table holds for the programmed Services (the
// shared dispatch chains not included).
func (d *Dataplane) Counts() Counts {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := Counts{Services: len(d.state)}
	for _, o := range d.state {
		c.Chains += len(o.chains)
		for _, rules := range o.chains {
			c.Rules += len(rules)
		}
		c.Sets += len(o.sets)
		c.Elements += len(o.elements)
	}
	return c
}
