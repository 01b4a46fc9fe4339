// Package providertest is the conformance suite every Portico provider runs
// unchanged: memory, local, aws, gcp and azure. A provider's test supplies a
// Harness around its real implementation and the fake (or in-memory) backend
// it talks to; the suite drives the provider only through providers.Provider
// and checks the backend through the Harness.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/portico-lb/portico/providers"
)

// Resource is one object in the backend, with the tags (or labels, or
// description-encoded marks) the provider put on it.
type Resource struct {
	Kind string
	ID   string
	Tags map[string]string
}

// Harness wraps a provider and its backend for the suite. Every function is
// required unless marked optional.
type Harness struct {
	// Provider under test.
	Provider providers.Provider
	// ClusterID used for keys.
	ClusterID string
	// Resources lists every object in the backend.
	Resources func() []Resource
	// MutatingCalls counts mutating backend calls so far.
	MutatingCalls func() int
	// InjectTransient makes the next n backend calls fail the way the
	// backend throttles (Throttling, 429, 5xx).
	InjectTransient func(n int)
	// CrashAfter lets n more mutating backend calls succeed and fails every
	// later call until Recover, as if the operator died mid-Ensure.
	CrashAfter func(n int)
	// Recover clears injected faults and crashes.
	Recover func()
	// Desired returns a valid desired load balancer for key with the given
	// nodes (by name) and ports. Optional: the default builds one with
	// InternalIPs in 10.0.0.0/24 and ProviderIDs "fake://<name>".
	Desired func(key providers.Key, nodes []string, ports []providers.Port) *providers.LoadBalancer
	// PlantForeign creates an object under key's deterministic name that
	// lacks Portico's ownership marks. Optional: the ownership test is skipped
	// without it.
	PlantForeign func(key providers.Key)
	// Owned reports whether a backend resource is Portico's for key.
	// Optional: the default checks providers.Owns on its tags.
	Owned func(r Resource, key providers.Key) bool
	// Settle waits for the backend's eventual consistency, if it has any.
	// Optional.
	Settle func()
}

// Run runs the conformance suite against the harness newHarness returns; it is
// called once per subtest so that subtests do not share backend state.
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, h *Harness)
	}{
		{"CreateReturnsAddress", testCreate},
		{"EnsureIsIdempotent", testIdempotent},
		{"UpdatePorts", testUpdatePorts},
		{"ChangeBackends", testChangeBackends},
		{"DeleteTwice", testDeleteTwice},
		{"CrashBetweenSteps", testCrashBetweenSteps},
		{"InjectedErrors", testInjectedErrors},
		{"LoadBalancersAreIsolated", testIsolation},
		{"ForeignResourcesUntouched", testForeign},
		{"EveryResourceIsTagged", testTagged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			fill(h)
			tc.fn(t, h)
		})
	}
}

func fill(h *Harness) {
	if h.ClusterID == "" {
		h.ClusterID = "conformance"
	}
	if h.Desired == nil {
		h.Desired = DefaultDesired
	}
	if h.Owned == nil {
		h.Owned = func(r Resource, key providers.Key) bool { return providers.Owns(r.Tags, key) }
	}
	if h.Settle == nil {
		h.Settle = func() {}
	}
}

// DefaultDesired builds a desired load balancer with one node per name.
func DefaultDesired(key providers.Key, nodes []string, ports []providers.Port) *providers.LoadBalancer {
	d := &providers.LoadBalancer{
		Key:           key,
		Ports:         ports,
		TrafficPolicy: providers.TrafficPolicyCluster,
		IPFamilies:    []string{"IPv4"},
		Scheme:        providers.SchemeExternal,
	}
	for i, n := range nodes {
		d.Nodes = append(d.Nodes, providers.Node{
			Name:        n,
			ProviderID:  "fake://" + n,
			InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})},
			Zone:        "zone-a",
		})
	}
	return d
}

// TCP returns a TCP port with the given listening and node port.
func TCP(port, nodePort int32) providers.Port {
	return providers.Port{Name: fmt.Sprintf("tcp-%d", port), Protocol: providers.TCP, Port: port, NodePort: nodePort, TargetPort: 8080}
}

func (h *Harness) key(name string) providers.Key {
	return providers.Key{ClusterID: h.ClusterID, Namespace: "conformance", Name: name, UID: "uid-" + name}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// ensure retries transient failures (as the controller would) up to a bound.
func ensure(t *testing.T, h *Harness, d *providers.LoadBalancer) *providers.Status {
	t.Helper()
	var err error
	for range 20 {
		var st *providers.Status
		st, err = h.Provider.Ensure(ctx(t), d)
		if err == nil {
			return st
		}
		if _, ok := providers.IsRetryable(err); !ok {
			break
		}
		h.Settle()
	}
	t.Fatalf("Ensure(%s): %v", d.Key, err)
	return nil
}

func del(t *testing.T, h *Harness, key providers.Key) {
	t.Helper()
	var err error
	for range 20 {
		if err = h.Provider.Delete(ctx(t), key); err == nil {
			return
		}
		if _, ok := providers.IsRetryable(err); !ok {
			break
		}
		h.Settle()
	}
	t.Fatalf("Delete(%s): %v", key, err)
}

func owned(h *Harness, key providers.Key) []Resource {
	var out []Resource
	for _, r := range h.Resources() {
		if h.Owned(r, key) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].ID < out[j].Kind+out[j].ID })
	return out
}

func requireAddress(t *testing.T, st *providers.Status) {
	t.Helper()
	if st == nil || len(st.Ingress) == 0 {
		t.Fatalf("status has no ingress: %+v", st)
	}
	for _, in := range st.Ingress {
		if !in.IP.IsValid() && in.Hostname == "" {
			t.Fatalf("ingress has neither IP nor hostname: %+v", in)
		}
	}
}

func testCreate(t *testing.T, h *Harness) {
	key := h.key("create")
	st := ensure(t, h, h.Desired(key, []string{"node-a", "node-b"}, []providers.Port{TCP(80, 30080)}))
	requireAddress(t, st)
	if len(owned(h, key)) == 0 {
		t.Fatalf("Ensure reported success but the backend holds nothing owned by %s", key)
	}
	h.Settle()
	obs, err := h.Provider.Observe(ctx(t), key)
	if err != nil {
		t.Fatalf("Observe after create: %v", err)
	}
	if fmt.Sprint(obs.Ingress) != fmt.Sprint(st.Ingress) {
		t.Errorf("Observe ingress %v differs from Ensure's %v", obs.Ingress, st.Ingress)
	}
	if _, err := h.Provider.Observe(ctx(t), h.key("never-created")); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Observe of a missing load balancer: got %v, want ErrNotFound", err)
	}
}

func testIdempotent(t *testing.T, h *Harness) {
	key := h.key("idempotent")
	d := h.Desired(key, []string{"node-a", "node-b"}, []providers.Port{TCP(80, 30080), TCP(443, 30443)})
	first := ensure(t, h, d)
	h.Settle()
	before := h.MutatingCalls()
	second := ensure(t, h, d)
	if got := h.MutatingCalls() - before; got != 0 {
		t.Errorf("second Ensure with unchanged input made %d mutating calls, want 0", got)
	}
	if fmt.Sprint(first.Ingress) != fmt.Sprint(second.Ingress) {
		t.Errorf("address changed across idempotent Ensure: %v -> %v", first.Ingress, second.Ingress)
	}
}

func testUpdatePorts(t *testing.T, h *Harness) {
	key := h.key("ports")
	nodes := []string{"node-a"}
	first := ensure(t, h, h.Desired(key, nodes, []providers.Port{TCP(80, 30080)}))
	h.Settle()
	st := ensure(t, h, h.Desired(key, nodes, []providers.Port{TCP(80, 30080), TCP(8443, 30443)}))
	if !hasPort(st, 8443) || !hasPort(st, 80) {
		t.Fatalf("after adding port 8443, status ports = %+v", st.Ports)
	}
	h.Settle()
	st = ensure(t, h, h.Desired(key, nodes, []providers.Port{TCP(8443, 30443)}))
	if hasPort(st, 80) || !hasPort(st, 8443) {
		t.Fatalf("after removing port 80, status ports = %+v", st.Ports)
	}
	if fmt.Sprint(first.Ingress) != fmt.Sprint(st.Ingress) {
		t.Errorf("port change moved the address: %v -> %v", first.Ingress, st.Ingress)
	}
}

func hasPort(st *providers.Status, port int32) bool {
	for _, p := range st.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

func testChangeBackends(t *testing.T, h *Harness) {
	key := h.key("backends")
	ports := []providers.Port{TCP(80, 30080)}
	st := ensure(t, h, h.Desired(key, []string{"node-a", "node-b"}, ports))
	if st.Backends.Total != 2 {
		t.Fatalf("backends total = %d, want 2", st.Backends.Total)
	}
	h.Settle()
	st = ensure(t, h, h.Desired(key, []string{"node-b", "node-c", "node-d"}, ports))
	if st.Backends.Total != 3 {
		t.Fatalf("after node change backends total = %d, want 3", st.Backends.Total)
	}
	h.Settle()
	obs, err := h.Provider.Observe(ctx(t), key)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	if obs.Backends.Total != 3 {
		t.Errorf("Observe backends total = %d, want 3", obs.Backends.Total)
	}
}

func testDeleteTwice(t *testing.T, h *Harness) {
	key := h.key("delete")
	ensure(t, h, h.Desired(key, []string{"node-a"}, []providers.Port{TCP(80, 30080)}))
	h.Settle()
	del(t, h, key)
	h.Settle()
	del(t, h, key)
	h.Settle()
	if left := owned(h, key); len(left) != 0 {
		t.Fatalf("after Delete the backend still holds %+v", left)
	}
	if _, err := h.Provider.Observe(ctx(t), key); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Observe after Delete: got %v, want ErrNotFound", err)
	}
}

// testCrashBetweenSteps stops Ensure after every possible number of mutating
// steps, then runs it again: the second run must converge to exactly what a
// clean run builds, with no duplicate and nothing leaked after Delete.
func testCrashBetweenSteps(t *testing.T, h *Harness) {
	ports := []providers.Port{TCP(80, 30080), TCP(443, 30443)}
	nodes := []string{"node-a", "node-b"}

	clean := h.key("crash-clean")
	before := h.MutatingCalls()
	ensure(t, h, h.Desired(clean, nodes, ports))
	steps := h.MutatingCalls() - before
	h.Settle()
	want := shape(owned(h, clean))
	if steps == 0 {
		t.Fatal("a clean create made no mutating calls")
	}

	for n := 0; n < steps; n++ {
		key := h.key(fmt.Sprintf("crash-%d", n))
		d := h.Desired(key, nodes, ports)
		h.CrashAfter(n)
		if _, err := h.Provider.Ensure(ctx(t), d); err == nil {
			t.Fatalf("crash after %d of %d steps: Ensure succeeded", n, steps)
		}
		h.Recover()
		h.Settle()
		st := ensure(t, h, d)
		requireAddress(t, st)
		h.Settle()
		if got := shape(owned(h, key)); got != want {
			t.Errorf("crash after %d steps: resources after recovery\n%s\nwant the shape of a clean create\n%s", n, got, want)
		}
		del(t, h, key)
		h.Settle()
		if left := owned(h, key); len(left) != 0 {
			t.Errorf("crash after %d steps: Delete leaked %+v", n, left)
		}
	}
}

// shape lists resource kinds with counts, which must match across keys.
func shape(rs []Resource) string {
	count := map[string]int{}
	for _, r := range rs {
		count[r.Kind]++
	}
	kinds := make([]string, 0, len(count))
	for k := range count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	s := ""
	for _, k := range kinds {
		s += fmt.Sprintf("%s=%d ", k, count[k])
	}
	return s
}

func testInjectedErrors(t *testing.T, h *Harness) {
	key := h.key("faults")
	d := h.Desired(key, []string{"node-a"}, []providers.Port{TCP(80, 30080)})
	h.InjectTransient(3)
	var lastErr error
	for range 10 {
		_, lastErr = h.Provider.Ensure(ctx(t), d)
		if lastErr == nil {
			break
		}
		if _, ok := providers.IsRetryable(lastErr); !ok {
			t.Fatalf("an injected transient fault surfaced as a non-retryable error: %v", lastErr)
		}
	}
	if lastErr != nil {
		t.Fatalf("Ensure never recovered from 3 transient faults: %v", lastErr)
	}
	h.Settle()
	if n := len(owned(h, key)); n == 0 {
		t.Fatal("nothing created after recovering from transient faults")
	}
}

func testIsolation(t *testing.T, h *Harness) {
	a, b := h.key("iso-a"), h.key("iso-b")
	ports := []providers.Port{TCP(80, 30080)}
	sa := ensure(t, h, h.Desired(a, []string{"node-a"}, ports))
	sb := ensure(t, h, h.Desired(b, []string{"node-a"}, ports))
	if fmt.Sprint(sa.Ingress) == fmt.Sprint(sb.Ingress) {
		t.Errorf("two load balancers share ingress %v", sa.Ingress)
	}
	h.Settle()
	beforeB := shape(owned(h, b))
	del(t, h, a)
	h.Settle()
	if got := shape(owned(h, b)); got != beforeB {
		t.Errorf("deleting %s changed %s's resources: %s -> %s", a, b, beforeB, got)
	}
	if _, err := h.Provider.Observe(ctx(t), b); err != nil {
		t.Errorf("Observe %s after deleting %s: %v", b, a, err)
	}
}

func testForeign(t *testing.T, h *Harness) {
	if h.PlantForeign == nil {
		t.Skip("harness cannot plant foreign resources")
	}
	key := h.key("foreign")
	h.PlantForeign(key)
	before := h.Resources()
	if _, err := h.Provider.Ensure(ctx(t), h.Desired(key, []string{"node-a"}, []providers.Port{TCP(80, 30080)})); err == nil {
		t.Error("Ensure adopted a resource without Portico's ownership marks")
	}
	_ = h.Provider.Delete(ctx(t), key)
	h.Settle()
	after := h.Resources()
	if !containsAll(after, before) {
		t.Errorf("Ensure/Delete touched a foreign resource:\nbefore %+v\nafter  %+v", before, after)
	}
}

func containsAll(have, want []Resource) bool {
	ids := map[string]bool{}
	for _, r := range have {
		ids[r.Kind+"/"+r.ID] = true
	}
	for _, r := range want {
		if !ids[r.Kind+"/"+r.ID] {
			return false
		}
	}
	return true
}

func testTagged(t *testing.T, h *Harness) {
	key := h.key("tagged")
	ensure(t, h, h.Desired(key, []string{"node-a", "node-b"}, []providers.Port{TCP(80, 30080), {Name: "dns", Protocol: providers.UDP, Port: 53, NodePort: 30053, TargetPort: 53}}))
	h.Settle()
	if len(owned(h, key)) == 0 {
		t.Fatal("no resource carries the ownership marks")
	}
	for _, r := range h.Resources() {
		if !h.Owned(r, key) && !isForeignOrOther(h, r) {
			t.Errorf("resource %s %s carries no ownership marks", r.Kind, r.ID)
		}
	}
}

// isForeignOrOther reports resources legitimately owned by another key or
// planted by the harness; everything Portico created must be owned by some key.
func isForeignOrOther(h *Harness, r Resource) bool {
	return r.Tags[providers.TagManagedBy] == providers.ManagedByValue
}

// RetryTransient calls f until it succeeds, fails with an error that is not
// retryable (providers.IsRetryable), or has been called attempts times,
// pausing between calls, as the Service controller would retry; it returns
// the last error.
func RetryTransient(attempts int, pause time.Duration, f func() error) error {
	var err error
	for range attempts {
		if err = f(); err == nil {
			return nil
		}
		if _, ok := providers.IsRetryable(err); !ok {
			return err
		}
		time.Sleep(pause)
	}
	return err
}
