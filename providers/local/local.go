// Package local is the bare-metal backend (class lb.portico.dev/local). It
// hands out addresses from IPPools; portico-forwarder on the nodes announces
// them by ARP/NDP (package announce).
//
// The allocation table lives in memory and is rebuilt from the cluster on
// first use: every Service of class lb.portico.dev/local keeps the addresses
// its status.loadBalancer.ingress (or its LoadBalancer object) shows, so an
// operator restart never reshuffles addresses.
package local

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// Name is the backend name; its class is lb.portico.dev/local.
const Name = "local"

// Operations the provider performs against its allocation state; Intercept
// sees each one.
const (
	OpSync    = "Sync"    // list Services and LoadBalancers to rebuild the table
	OpPools   = "Pools"   // list IPPools
	OpReserve = "Reserve" // record a Service's addresses
	OpRelease = "Release" // drop a Service's addresses
)

// IsMutating reports whether op changes the allocation state.
func IsMutating(op string) bool { return op == OpReserve || op == OpRelease }

// Options configure a Provider.
type Options struct {
	ClusterID string
	// Client reads IPPools, Services and LoadBalancers.
	Client client.Client
	// OnRelease is called (without the provider's lock held) whenever an
	// address becomes free, so the controller can requeue pending Services.
	OnRelease func()
	// Reensure, when set, is given the local Services whose address left
	// every IPPool, so the Service controller ensures them again (this
	// backend then releases the address).
	Reensure func(services []types.NamespacedName)
	// Intercept, when set, runs before every operation; an error fails it.
	// Tests use it to count calls and inject faults and crashes.
	Intercept func(op string) error
}

// Provider allocates addresses from IPPools.
type Provider struct {
	opts Options

	mu     sync.Mutex
	synced bool
	table  *Table
	// shared is, per Service holding an address with others, how it last
	// judged each of its BGP addresses (resyncSharers).
	shared map[types.NamespacedName]map[string]v1alpha1.BGPAddressStatus
}

var _ providers.Provider = (*Provider)(nil)

// New returns a provider; it reads the cluster lazily, on first use.
func New(opts Options) (*Provider, error) {
	if opts.Client == nil {
		return nil, errors.New("local provider needs a Kubernetes client")
	}
	return &Provider{opts: opts, table: NewTable()}, nil
}

// Config holds the local backend's operator settings.
type Config struct{}

// AddFlags registers --local-* flags. The local backend's settings live in
// IPPool objects, so there are none yet.
func (c *Config) AddFlags(fs *pflag.FlagSet) {}

// Factory returns a providers.Factory bound to c.
func (c *Config) Factory() providers.Factory {
	return func(_ context.Context, opts providers.Options) (providers.Provider, error) {
		return New(Options{ClusterID: opts.ClusterID, Client: opts.Client, OnRelease: opts.Hooks.RetryPending, Reensure: opts.Hooks.Reensure})
	}
}

// Class implements providers.Provider.
func (p *Provider) Class() string { return providers.Class(Name) }

var _ providers.ControllerSetup = (*Provider)(nil)

// SetupWithManager registers the local backend's own controllers: IPPool
// status (its Events through rec), which also finds Services whose address
// left every pool, and the BGP watch, which has Services ensured again when
// who advertises their addresses may have changed.
func (p *Provider) SetupWithManager(mgr manager.Manager, rec events.EventRecorder) error {
	if err := (&IPPoolReconciler{Client: mgr.GetClient(), Recorder: rec, OnStranded: p.opts.Reensure}).SetupWithManager(mgr); err != nil {
		return err
	}
	if p.opts.Reensure == nil {
		return nil
	}
	return mgr.Add(&BGPWatch{Cache: mgr.GetCache(), Reensure: p.opts.Reensure})
}

var _ providers.PodTargeter = (*Provider)(nil)

// TargetsPods implements providers.PodTargeter: the forwarder sends traffic
// for the address straight to the endpoints, node ports or not.
func (p *Provider) TargetsPods() bool { return true }

func (p *Provider) call(op string) error {
	if p.opts.Intercept != nil {
		return p.opts.Intercept(op)
	}
	return nil
}

// Ensure implements providers.Provider: it allocates the addresses, then
// reports how those of IPPools announced by BGP are advertised.
func (p *Provider) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	st, err := p.allocate(ctx, d)
	if err != nil {
		return nil, err
	}
	if err := p.advertised(ctx, d, st); err != nil {
		return nil, err
	}
	return st, nil
}

func (p *Provider) allocate(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.sync(ctx); err != nil {
		return nil, err
	}
	pools, err := p.pools(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.releaseLost(ctx, pools, d); err != nil {
		return nil, err
	}
	addrs, err := Plan(pools, p.table, d)
	if err != nil {
		return nil, err
	}
	want := allocationFor(d, addrs)
	if have := p.table.Get(d.Key); have == nil || !have.equal(want) {
		if err := p.call(OpReserve); err != nil {
			return nil, fmt.Errorf("reserving %v for %s: %w", addrs, d.Key, err)
		}
		if have != nil {
			defer p.sharersChanged(slices.DeleteFunc(slices.Clone(have.Addresses), func(ip netip.Addr) bool { return slices.Contains(want.Addresses, ip) }), d.Key)
		}
		if freed := p.table.Put(want); len(freed) > 0 {
			defer p.released()
		}
		ctrlLog(ctx).V(1).Info("Reserved addresses", "addresses", addrs)
	}
	return status(want), nil
}

// releaseLost drops d's allocation when an address it holds is in no valid
// IPPool that selects it any more (the pool was deleted, or its addresses or
// selectors changed): such an address must stop being announced, so the
// error says Released and the Service's status drops its addresses. The next
// Ensure plans afresh. p.mu is held.
func (p *Provider) releaseLost(ctx context.Context, pools []Pool, d *providers.LoadBalancer) error {
	lost := Lost(pools, p.table, d)
	if len(lost) == 0 {
		return nil
	}
	if err := p.call(OpRelease); err != nil {
		return fmt.Errorf("releasing %v of %s: %w", lost, d.Key, err)
	}
	if freed := p.table.Delete(d.Key); len(freed) > 0 {
		defer p.released()
	}
	ctrlLog(ctx).Info("Released addresses that left every IPPool", "addresses", lost)
	return &providers.ConfigError{Reason: "AddressNotInPool", Released: true,
		Message: fmt.Sprintf("address %s is no longer in any valid IPPool that selects this Service (the IPPool was deleted, or its addresses or selectors changed); it was released and is no longer announced", joinAddrs(lost))}
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// Observe implements providers.Provider.
func (p *Provider) Observe(ctx context.Context, key providers.Key) (*providers.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.sync(ctx); err != nil {
		return nil, err
	}
	a := p.table.Get(key)
	if a == nil {
		return nil, providers.ErrNotFound
	}
	return status(a), nil
}

// Delete implements providers.Provider.
func (p *Provider) Delete(ctx context.Context, key providers.Key) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.sync(ctx); err != nil {
		return err
	}
	if p.table.Get(key) == nil {
		return nil
	}
	if err := p.call(OpRelease); err != nil {
		return fmt.Errorf("releasing addresses of %s: %w", key, err)
	}
	defer p.sharersChanged(p.table.Get(key).Addresses, key)
	delete(p.shared, types.NamespacedName{Namespace: key.Namespace, Name: key.Name})
	if freed := p.table.Delete(key); len(freed) > 0 {
		ctrlLog(ctx).V(1).Info("Released addresses", "addresses", freed)
		defer p.released()
	}
	return nil
}

// sharersChanged has the Service controller ensure again the Services
// still holding one of addrs after key left them: a shared address is
// judged over all its holders (BGPStatus), so theirs may have changed.
// Callers defer it while holding p.mu; Reensure runs in a goroutine.
func (p *Provider) sharersChanged(addrs []netip.Addr, key providers.Key) {
	if p.opts.Reensure == nil {
		return
	}
	var keys []types.NamespacedName
	for _, ip := range addrs {
		for _, k := range p.table.Holders(ip) {
			nn := types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
			if (k.Namespace != key.Namespace || k.Name != key.Name) && !slices.Contains(keys, nn) {
				keys = append(keys, nn)
			}
		}
	}
	if len(keys) > 0 {
		go p.opts.Reensure(keys)
	}
}

// released notifies OnRelease. Callers defer it while holding p.mu, so it
// hands the call to a goroutine: OnRelease may call back into the provider.
func (p *Provider) released() {
	if p.opts.OnRelease != nil {
		go p.opts.OnRelease()
	}
}

// Allocations returns a copy of the allocation table, sorted by key.
func (p *Provider) Allocations() []Allocation {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Allocation
	for _, a := range p.table.All() {
		out = append(out, *a)
	}
	return out
}

func status(a *Allocation) *providers.Status {
	st := &providers.Status{
		Backends: providers.Backends{Total: a.Nodes, Healthy: a.Nodes},
		Cost:     providers.CostInputs{Kind: "local-address", Units: map[string]int{"addresses": len(a.Addresses)}},
	}
	// The forwarders count bytes per address (usage/meters.LocalBytes).
	ids := make([]string, 0, len(a.Addresses))
	for _, ip := range a.Addresses {
		ids = append(ids, ip.String())
	}
	st.Cost.MeterID = strings.Join(ids, ",")
	for _, ip := range a.Addresses {
		st.Ingress = append(st.Ingress, providers.Ingress{IP: ip, IPMode: providers.IPModeVIP})
		st.Resources = append(st.Resources, providers.Resource{Kind: "address", ID: ip.String()})
	}
	for _, port := range a.Ports {
		st.Ports = append(st.Ports, providers.PortStatus{Port: port.Port, Protocol: port.Protocol})
	}
	return st
}

// sync rebuilds the table from the cluster once. p.mu is held.
func (p *Provider) sync(ctx context.Context) error {
	if p.synced {
		return nil
	}
	if err := p.call(OpSync); err != nil {
		return fmt.Errorf("rebuilding local allocations: %w", err)
	}
	table, err := Rebuild(ctx, p.opts.Client, p.opts.ClusterID)
	if err != nil {
		return providers.Retry(fmt.Errorf("rebuilding local allocations: %w", err), 0)
	}
	p.table, p.synced = table, true
	ctrlLog(ctx).Info("Rebuilt local address allocations from the cluster", "services", len(table.byKey))
	return nil
}

// Rebuild reads every Service the operator serves through
// lb.portico.dev/local (model.OfClass: its LoadBalancer record says so, the
// default class included) and returns the table of addresses they hold, from
// the Service's status and the record's.
func Rebuild(ctx context.Context, c client.Client, clusterID string) (*Table, error) {
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	var lbs v1alpha1.LoadBalancerList
	if err := c.List(ctx, &lbs); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("listing LoadBalancers: %w", err)
	}
	recorded := map[string]*v1alpha1.LoadBalancer{}
	for i := range lbs.Items {
		recorded[lbs.Items[i].Namespace+"/"+lbs.Items[i].Name] = &lbs.Items[i]
	}
	t := NewTable()
	for _, s := range model.OfClass(providers.Class(Name), svcs.Items, lbs.Items) {
		key := providers.Key{ClusterID: clusterID, Namespace: s.Namespace, Name: s.Name, UID: string(s.UID)}
		// A malformed key shares with nothing; the address stays held.
		sharing, _ := model.SharingKey(s.Annotations)
		a := &Allocation{Key: key, SharingKey: sharing, Addresses: model.IngressIPs(s), TrafficPolicy: providers.TrafficPolicyCluster}
		if s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			a.TrafficPolicy = providers.TrafficPolicyLocal
		}
		a.Backend = BackendKey(a.TrafficPolicy, s.Spec.Selector)
		for _, sp := range s.Spec.Ports {
			a.Ports = append(a.Ports, providers.Port{Name: sp.Name, Protocol: providers.Protocol(sp.Protocol), Port: sp.Port, NodePort: sp.NodePort})
		}
		for _, addr := range recorded[key.String()].Status.Addresses {
			if ip, err := netip.ParseAddr(addr.IP); err == nil && !slices.Contains(a.Addresses, ip.Unmap()) {
				a.Addresses = append(a.Addresses, ip.Unmap())
			}
		}
		if len(a.Addresses) > 0 {
			t.Put(a)
		}
	}
	return t, nil
}

// pools lists and parses the IPPools; invalid pools are skipped (the IPPool
// controller flags them with a condition).
func (p *Provider) pools(ctx context.Context) ([]Pool, error) {
	if err := p.call(OpPools); err != nil {
		return nil, fmt.Errorf("listing IPPools: %w", err)
	}
	var list v1alpha1.IPPoolList
	if err := p.opts.Client.List(ctx, &list); err != nil {
		return nil, providers.Retry(fmt.Errorf("listing IPPools: %w", err), 0)
	}
	out := make([]Pool, 0, len(list.Items))
	for i := range list.Items {
		pool, err := PoolFromAPI(&list.Items[i])
		if err != nil {
			ctrlLog(ctx).V(1).Info("Skipping invalid IPPool", "IPPool", list.Items[i].Name, "reason", err.Error())
			continue
		}
		out = append(out, pool)
	}
	slices.SortFunc(out, func(a, b Pool) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// PoolFromAPI parses an IPPool object.
func PoolFromAPI(ip *v1alpha1.IPPool) (Pool, error) {
	ranges, err := ParseRanges(ip.Spec.Addresses)
	if err != nil {
		return Pool{}, err
	}
	pool := Pool{
		Name:       ip.Name,
		Ranges:     ranges,
		AutoAssign: ip.Spec.AutoAssign == nil || *ip.Spec.AutoAssign,
		AvoidBuggy: ip.Spec.AvoidBuggyIPs,

		AcrossNamespaces: ip.Spec.AllowSharingAcrossNamespaces,
	}
	if pool.Services, err = selector(ip.Spec.ServiceSelector); err != nil {
		return Pool{}, fmt.Errorf("serviceSelector: %w", err)
	}
	if pool.Namespaces, err = selector(ip.Spec.NamespaceSelector); err != nil {
		return Pool{}, fmt.Errorf("namespaceSelector: %w", err)
	}
	return pool, nil
}

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(s)
}
