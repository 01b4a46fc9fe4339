// Package memory is a real, in-process load-balancer backend. It keeps its
// "cloud" in memory: load balancers with ownership tags, listeners per port and
// registered targets, each created by a separate mutating call so that a crash
// between steps leaves the same partial state a cloud would. It records every
// call and can inject errors, latency and crashes. It serves unit,
// integration and scale tests, and runs the shared conformance suite.
package memory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
)

// Name is the backend name; its class is lb.portico.dev/memory.
const Name = "memory"

// ErrCrashed is returned by every call after an injected crash, until Recover.
var ErrCrashed = errors.New("memory provider: injected crash")

// Call is one recorded provider or backend call.
type Call struct {
	Op  string
	Key string
	Err error
}

// Mutating operations of the in-memory backend, as recorded in Calls.
const (
	OpCreateLoadBalancer = "CreateLoadBalancer"
	OpDeleteLoadBalancer = "DeleteLoadBalancer"
	OpCreateListener     = "CreateListener"
	OpModifyListener     = "ModifyListener"
	OpDeleteListener     = "DeleteListener"
	OpRegisterTargets    = "RegisterTargets"
	OpDeregisterTargets  = "DeregisterTargets"
	// Read operations.
	OpDescribe = "Describe"
	// Provider-level operations.
	OpEnsure  = "Ensure"
	OpObserve = "Observe"
	OpDelete  = "Delete"
)

// Options configure the backend.
type Options struct {
	// Class overrides the served class (default lb.portico.dev/memory).
	Class string
	// ClusterID goes into ownership tags.
	ClusterID string
	// IPv4 and IPv6 are the address pools (defaults 198.51.100.0/24 and
	// 2001:db8:100::/120, documentation ranges).
	IPv4, IPv6 netip.Prefix
	// Latency is added to every backend call.
	Latency time.Duration
	// CallLog is how many recent calls Calls keeps; 0 keeps every call
	// (tests read them all). MutatingCalls counts every call either way.
	CallLog int
}

// operatorCallLog is the CallLog of the backend the operator runs
// (Config.Factory): nothing in the operator reads the log, which otherwise
// grows with every call for the life of the process.
const operatorCallLog = 1000

// Resource is one object in the in-memory cloud.
type Resource struct {
	Kind string
	ID   string
	Tags map[string]string
}

type loadBalancer struct {
	name      string
	tags      map[string]string
	addresses []netip.Addr
	listeners map[string]int32 // "TCP/80" -> target port (node port or pod port)
	targets   []string         // sorted
}

type injectedError struct {
	op    string
	err   error
	times int
}

// Provider is the in-memory backend. The zero value is not usable; call New.
type Provider struct {
	opts Options

	mu    sync.Mutex
	lbs   map[string]*loadBalancer // by name
	used  map[netip.Addr]string    // address -> lb name
	calls []Call
	// mutating counts mutating backend calls, failed ones too.
	mutating int
	faults   []injectedError
	latency  time.Duration
	// recent are the last distinct target lists stored (see intern).
	recent [][]string
	// inj is the fault core shared with the cloud fakes: crashes and
	// rules by kind (Inject); faults holds errors given verbatim.
	inj *fault.Injector
}

var _ providers.Provider = (*Provider)(nil)

// New returns an empty in-memory backend.
func New(opts Options) *Provider {
	if opts.Class == "" {
		opts.Class = providers.Class(Name)
	}
	if !opts.IPv4.IsValid() {
		opts.IPv4 = netip.MustParsePrefix("198.51.100.0/24")
	}
	if !opts.IPv6.IsValid() {
		opts.IPv6 = netip.MustParsePrefix("2001:db8:100::/120")
	}
	p := &Provider{
		opts:    opts,
		lbs:     map[string]*loadBalancer{},
		used:    map[netip.Addr]string{},
		latency: opts.Latency,
		inj:     fault.New(1),
	}
	if opts.CallLog > 0 {
		p.inj.SetCallLog(opts.CallLog)
	}
	return p
}

// Config holds the operator flags of the memory backend.
type Config struct {
	IPv4Range string
	Latency   time.Duration
}

// AddFlags registers --memory-* flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.IPv4Range, "memory-ipv4-range", "198.51.100.0/24", "IPv4 CIDR the memory backend allocates addresses from (memory backend, for tests and benchmarks).")
	fs.DurationVar(&c.Latency, "memory-latency", 0, "Delay added to every memory-backend call, to model a slow cloud.")
}

// Factory returns a providers.Factory bound to c.
func (c *Config) Factory() providers.Factory {
	return func(_ context.Context, opts providers.Options) (providers.Provider, error) {
		o := Options{ClusterID: opts.ClusterID, Latency: c.Latency, CallLog: operatorCallLog}
		if c.IPv4Range != "" {
			p, err := netip.ParsePrefix(c.IPv4Range)
			if err != nil || !p.Addr().Is4() {
				return nil, fmt.Errorf("--memory-ipv4-range %q: not an IPv4 CIDR", c.IPv4Range)
			}
			o.IPv4 = p
		}
		return New(o), nil
	}
}

// TargetsPods implements providers.PodTargeter: the memory backend can
// register pod IPs as targets.
func (p *Provider) TargetsPods() bool { return true }

// Class implements providers.Provider.
func (p *Provider) Class() string { return p.opts.Class }

// ResourceName is the deterministic backend name of the load balancer for key.
func ResourceName(key providers.Key) string {
	sum := sha256.Sum256([]byte(key.ClusterID + "/" + key.Namespace + "/" + key.Name))
	return "portico-" + hex.EncodeToString(sum[:])[:16]
}

// Ensure implements providers.Provider.
func (p *Provider) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	p.record(OpEnsure, d.Key, nil)
	name := ResourceName(d.Key)

	lb, err := p.describe(ctx, name)
	if err != nil {
		return nil, err
	}
	if lb != nil && !providers.Owns(lb.tags, d.Key) {
		return nil, &providers.NotOwnedError{Kind: "loadBalancer", ID: name}
	}
	if lb == nil {
		if lb, err = p.createLoadBalancer(ctx, d, name); err != nil {
			return nil, err
		}
	}

	want := map[string]int32{}
	for _, port := range d.Ports {
		target := port.NodePort
		if d.TargetPods {
			target = port.TargetPort
		}
		want[listenerKey(port)] = target
	}
	for _, lk := range sortedKeys(want) {
		have, ok := lb.listeners[lk]
		switch {
		case !ok:
			err = p.mutate(ctx, OpCreateListener, d.Key, func() { lb.listeners[lk] = want[lk] })
		case have != want[lk]:
			err = p.mutate(ctx, OpModifyListener, d.Key, func() { lb.listeners[lk] = want[lk] })
		}
		if err != nil {
			return nil, fmt.Errorf("ensuring listener %s: %w", lk, err)
		}
	}
	for _, lk := range sortedKeys(lb.listeners) {
		if _, ok := want[lk]; !ok {
			if err := p.mutate(ctx, OpDeleteListener, d.Key, func() { delete(lb.listeners, lk) }); err != nil {
				return nil, fmt.Errorf("deleting listener %s: %w", lk, err)
			}
		}
	}

	targets := p.internTargets(d)
	if !slices.Equal(targets, lb.targets) {
		// Register new targets before deregistering old ones, as a cloud
		// controller must, so a node change never drops traffic.
		union := sortedUnion(lb.targets, targets)
		union = p.intern(union)
		if !slices.Equal(union, lb.targets) {
			if err := p.mutate(ctx, OpRegisterTargets, d.Key, func() { lb.targets = union }); err != nil {
				return nil, fmt.Errorf("registering targets: %w", err)
			}
		}
		if !slices.Equal(union, targets) {
			if err := p.mutate(ctx, OpDeregisterTargets, d.Key, func() { lb.targets = targets }); err != nil {
				return nil, fmt.Errorf("deregistering targets: %w", err)
			}
		}
	}
	return p.status(lb), nil
}

// Observe implements providers.Provider.
func (p *Provider) Observe(ctx context.Context, key providers.Key) (*providers.Status, error) {
	p.record(OpObserve, key, nil)
	lb, err := p.describe(ctx, ResourceName(key))
	if err != nil {
		return nil, err
	}
	if lb == nil || !providers.Owns(lb.tags, key) {
		return nil, providers.ErrNotFound
	}
	return p.status(lb), nil
}

// Delete implements providers.Provider.
func (p *Provider) Delete(ctx context.Context, key providers.Key) error {
	p.record(OpDelete, key, nil)
	name := ResourceName(key)
	lb, err := p.describe(ctx, name)
	if err != nil {
		return err
	}
	if lb == nil {
		return nil
	}
	if !providers.Owns(lb.tags, key) {
		// Not ours: leave it, and report success for our part (nothing of
		// ours exists under this name).
		return nil
	}
	for _, lk := range sortedKeys(lb.listeners) {
		if err := p.mutate(ctx, OpDeleteListener, key, func() { delete(lb.listeners, lk) }); err != nil {
			return fmt.Errorf("deleting listener %s: %w", lk, err)
		}
	}
	return p.mutate(ctx, OpDeleteLoadBalancer, key, func() {
		for _, a := range lb.addresses {
			delete(p.used, a)
		}
		delete(p.lbs, name)
	})
}

func (p *Provider) createLoadBalancer(ctx context.Context, d *providers.LoadBalancer, name string) (*loadBalancer, error) {
	var lb *loadBalancer
	var allocErr error
	err := p.mutate(ctx, OpCreateLoadBalancer, d.Key, func() {
		addrs, err := p.allocate(d, name)
		if err != nil {
			allocErr = err
			return
		}
		lb = &loadBalancer{
			name:      name,
			tags:      providers.OwnershipTags(d.Key),
			addresses: addrs,
			listeners: map[string]int32{},
		}
		p.lbs[name] = lb
	})
	if err != nil {
		return nil, fmt.Errorf("creating load balancer %s: %w", name, err)
	}
	return lb, allocErr
}

// allocate picks the requested addresses or the lowest free ones; p.mu is held.
func (p *Provider) allocate(d *providers.LoadBalancer, name string) ([]netip.Addr, error) {
	if len(d.RequestedIPs) > 0 {
		for _, a := range d.RequestedIPs {
			if owner, ok := p.used[a]; ok && owner != name {
				return nil, providers.Configf("AddressInUse", "requested address %s is already in use by another load balancer", a)
			}
			if !p.opts.IPv4.Contains(a) && !p.opts.IPv6.Contains(a) {
				return nil, providers.Configf("AddressNotInPool", "requested address %s is outside the memory backend's ranges %s and %s", a, p.opts.IPv4, p.opts.IPv6)
			}
		}
		for _, a := range d.RequestedIPs {
			p.used[a] = name
		}
		return slices.Clone(d.RequestedIPs), nil
	}
	families := d.IPFamilies
	if len(families) == 0 {
		families = []string{"IPv4"}
	}
	if !d.DualStack {
		families = families[:1]
	}
	var out []netip.Addr
	for _, fam := range families {
		pool := p.opts.IPv4
		if fam == "IPv6" {
			pool = p.opts.IPv6
		}
		a, ok := p.lowestFree(pool)
		if !ok {
			for _, got := range out {
				delete(p.used, got)
			}
			return nil, providers.Configf("PoolExhausted", "no free %s address left in the memory backend's range %s", fam, pool)
		}
		p.used[a] = name
		out = append(out, a)
	}
	return out, nil
}

func (p *Provider) lowestFree(pool netip.Prefix) (netip.Addr, bool) {
	a := pool.Masked().Addr().Next() // skip the network address
	for ; a.IsValid() && pool.Contains(a); a = a.Next() {
		if _, used := p.used[a]; !used {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (p *Provider) status(lb *loadBalancer) *providers.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &providers.Status{
		Resources: []providers.Resource{{Kind: "loadBalancer", ID: lb.name}},
		Backends:  providers.Backends{Total: len(lb.targets), Healthy: len(lb.targets)},
		Cost: providers.CostInputs{
			Kind:  "memory",
			Units: map[string]int{"listeners": len(lb.listeners), "targets": len(lb.targets)},
		},
	}
	for _, a := range lb.addresses {
		st.Ingress = append(st.Ingress, providers.Ingress{IP: a, IPMode: providers.IPModeVIP})
	}
	for _, lk := range sortedKeys(lb.listeners) {
		proto, port, _ := strings.Cut(lk, "/")
		n, _ := strconv.Atoi(port)
		st.Ports = append(st.Ports, providers.PortStatus{Port: int32(n), Protocol: providers.Protocol(proto)})
		st.Resources = append(st.Resources, providers.Resource{Kind: "listener", ID: lb.name + "/" + lk})
	}
	return st
}

// describe is the read call: it returns a snapshot pointer to the live
// object, or nil when none exists.
func (p *Provider) describe(ctx context.Context, name string) (*loadBalancer, error) {
	if err := p.call(ctx, OpDescribe, providers.Key{Name: name}, false); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lbs[name], nil
}

// mutate performs one mutating backend call: it applies latency, faults and
// crashes, then runs apply under the lock.
func (p *Provider) mutate(ctx context.Context, op string, key providers.Key, apply func()) error {
	if err := p.call(ctx, op, key, true); err != nil {
		return err
	}
	p.mu.Lock()
	apply()
	p.mu.Unlock()
	return nil
}

func (p *Provider) call(ctx context.Context, op string, key providers.Key, mutating bool) error {
	p.mu.Lock()
	latency := p.latency
	p.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	d := p.inj.Decide(fault.Request{Service: Name, Op: op, Mutating: mutating})
	p.mu.Lock()
	defer p.mu.Unlock()
	err := kindError(d.Kind)
	if err == nil {
		err = p.takeFault(op)
	}
	p.inj.Record(fault.Request{Service: Name, Op: op, Mutating: mutating}, string(d.Kind))
	p.logCall(Call{Op: op, Key: key.String(), Err: err})
	return err
}

// kindError is the error the backend returns for an injected fault kind.
func kindError(k fault.Kind) error {
	switch k {
	case fault.None:
		return nil
	case fault.Crash:
		return ErrCrashed
	case fault.Throttle:
		return providers.Retry(errors.New("memory provider: throttled (injected)"), 0)
	default:
		return providers.Retry(fmt.Errorf("memory provider: %s (injected)", k), 0)
	}
}

func (p *Provider) takeFault(op string) error {
	for i := range p.faults {
		f := &p.faults[i]
		if f.times != 0 && (f.op == op || f.op == "*") {
			if f.times > 0 {
				f.times--
			}
			return f.err
		}
	}
	return nil
}

func (p *Provider) record(op string, key providers.Key, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logCall(Call{Op: op, Key: key.String(), Err: err})
}

// logCall appends c to the log, keeping at most 2 x CallLog entries (Calls
// returns the last CallLog). Called with p.mu held.
func (p *Provider) logCall(c Call) {
	if IsMutating(c.Op) {
		p.mutating++
	}
	p.calls = append(p.calls, c)
	if n := p.opts.CallLog; n > 0 && len(p.calls) >= 2*n {
		p.calls = append(make([]Call, 0, 2*n), p.calls[len(p.calls)-n:]...)
	}
}

// InjectError makes the next times calls of op ("*" for any backend call)
// fail with err; times < 0 fails them until ClearFaults.
func (p *Provider) InjectError(op string, err error, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, injectedError{op: op, err: err, times: times})
}

// ClearFaults removes injected errors and recovers from a crash.
func (p *Provider) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
	p.inj.Recover()
}

// SetLatency sets the delay added to every backend call.
func (p *Provider) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Inject adds a rule of the fault core shared with the cloud fakes
// (internal/fault): Throttle and the server-side kinds fail as retryable
// errors, Crash as ErrCrashed.
func (p *Provider) Inject(r fault.Rule) { p.inj.Add(r) }

// Faults returns the fault core's statistics (calls, injected faults).
func (p *Provider) Faults() fault.Stats { return p.inj.Stats() }

// CrashAfter lets n more mutating calls succeed, then fails every call with
// ErrCrashed until ClearFaults, as if the operator died between two steps.
func (p *Provider) CrashAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inj.CrashAfter(n)
}

// Calls returns a copy of every recorded call (the last Options.CallLog
// when set).
func (p *Provider) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := p.opts.CallLog; n > 0 && len(p.calls) > n {
		return slices.Clone(p.calls[len(p.calls)-n:])
	}
	return slices.Clone(p.calls)
}

// MutatingCalls counts the mutating backend calls (failed ones too), all of
// them even when the log keeps only the recent ones.
func (p *Provider) MutatingCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mutating
}

// IsMutating reports whether op changes the in-memory cloud.
func IsMutating(op string) bool {
	switch op {
	case OpCreateLoadBalancer, OpDeleteLoadBalancer, OpCreateListener, OpModifyListener,
		OpDeleteListener, OpRegisterTargets, OpDeregisterTargets:
		return true
	}
	return false
}

// Resources lists every object in the in-memory cloud, sorted.
func (p *Provider) Resources() []Resource {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Resource
	for _, name := range sortedKeys(p.lbs) {
		lb := p.lbs[name]
		out = append(out, Resource{Kind: "loadBalancer", ID: name, Tags: lb.tags})
		for _, lk := range sortedKeys(lb.listeners) {
			out = append(out, Resource{Kind: "listener", ID: name + "/" + lk, Tags: lb.tags})
		}
	}
	return out
}

// PlantForeign creates a load balancer under key's deterministic name without
// Portico's tags, as a user or another tool might.
func (p *Provider) PlantForeign(key providers.Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := ResourceName(key)
	p.lbs[name] = &loadBalancer{name: name, tags: map[string]string{"owner": "someone-else"}, listeners: map[string]int32{}}
}

// Targets returns the registered targets of key's load balancer.
func (p *Provider) Targets(key providers.Key) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lb := p.lbs[ResourceName(key)]; lb != nil {
		return slices.Clone(lb.targets)
	}
	return nil
}

// intern returns a target list equal to targets that another load balancer
// already holds, when one of the recently seen lists is equal: at thousands
// of nodes, every load balancer of a cluster has the same targets, and one
// copy serves them all. Target lists are never modified in place.
func (p *Provider) intern(targets []string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, have := range p.recent {
		if slices.Equal(have, targets) {
			return have
		}
	}
	p.recent = append(p.recent, targets)
	if len(p.recent) > 4 {
		p.recent = p.recent[1:]
	}
	return targets
}

// internTargets returns d's target list, interned. When d targets nodes
// sorted by name, as the Service controller's shared node set is, and an
// equal list is interned already, it is returned without building d's: at
// thousands of nodes, building the list for every Ensure was most of the
// allocations of the process the memory backend runs in.
func (p *Provider) internTargets(d *providers.LoadBalancer) []string {
	if !d.TargetPods && slices.IsSortedFunc(d.Nodes, func(a, b providers.Node) int { return strings.Compare(a.Name, b.Name) }) {
		p.mu.Lock()
		for _, have := range p.recent {
			if sameNames(have, d.Nodes) {
				p.mu.Unlock()
				return have
			}
		}
		p.mu.Unlock()
	}
	return p.intern(desiredTargets(d))
}

// sameNames reports whether targets lists exactly the names of nodes, in
// order.
func sameNames(targets []string, nodes []providers.Node) bool {
	if len(targets) != len(nodes) {
		return false
	}
	for i, n := range nodes {
		if targets[i] != n.Name {
			return false
		}
	}
	return true
}

func listenerKey(port providers.Port) string {
	return fmt.Sprintf("%s/%d", port.Protocol, port.Port)
}

func desiredTargets(d *providers.LoadBalancer) []string {
	out := make([]string, 0, max(len(d.Nodes), len(d.Endpoints)))
	if d.TargetPods {
		for _, ep := range d.Endpoints {
			if ep.Ready {
				out = append(out, ep.IP.String())
			}
		}
	} else {
		for _, n := range d.Nodes {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func sortedUnion(a, b []string) []string {
	if len(a) == 0 {
		return b // sorted and compact already
	}
	out := append(slices.Clone(a), b...)
	sort.Strings(out)
	return slices.Compact(out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var _ providers.OrphanScanner = (*Provider)(nil)

// ListOwned lists the load balancers marked for clusterID.
func (p *Provider) ListOwned(ctx context.Context, clusterID string) ([]providers.Owned, error) {
	if err := p.call(ctx, OpDescribe, providers.Key{ClusterID: clusterID}, false); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []providers.Owned
	for _, name := range sortedKeys(p.lbs) {
		tags := p.lbs[name].tags
		if tags[providers.TagManagedBy] != providers.ManagedByValue || tags[providers.TagCluster] != clusterID {
			continue
		}
		key, ok := providers.ServiceFromMark(clusterID, tags[providers.TagService])
		if !ok {
			continue
		}
		out = append(out, providers.Owned{Kind: "loadBalancer", ID: name, Service: key})
	}
	return out, nil
}

// DeleteOrphan refuses: the memory backend has no per-cluster resources.
func (p *Provider) DeleteOrphan(_ context.Context, _ string, o providers.Owned) error {
	return fmt.Errorf("memory backend: %s %s is not a per-cluster resource", o.Kind, o.ID)
}

// Fingerprint is the load balancer's name.
func (p *Provider) Fingerprint(key providers.Key) string { return ResourceName(key) }
