package memory

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/portico-lb/portico/providers"
)

// TestTargetsAllocateOnce: a load balancer's target list over thousands of
// nodes is built in one allocation, and a new load balancer registers it
// without a copy. Growing the list by appending was most of the operator's
// allocations in make bench-scale (the memory backend runs in its process).
func TestTargetsAllocateOnce(t *testing.T) {
	d := &providers.LoadBalancer{}
	for i := range 5000 {
		d.Nodes = append(d.Nodes, providers.Node{Name: fmt.Sprintf("node-%05d", i)})
	}
	if n := testing.AllocsPerRun(10, func() { desiredTargets(d) }); n > 1 {
		t.Errorf("desiredTargets over 5,000 nodes: %v allocations, want 1", n)
	}
	targets := desiredTargets(d)
	if n := testing.AllocsPerRun(10, func() { sortedUnion(nil, targets) }); n > 0 {
		t.Errorf("the union with no targets yet: %v allocations, want none", n)
	}
}

// TestInternedTargetsCostNothing: when the node list of an Ensure equals one
// interned already (every Service shares the cluster's node set), the
// backend returns the interned list without building another; a different
// list is still built, and an unsorted one is never mistaken for it.
func TestInternedTargetsCostNothing(t *testing.T) {
	p := New(Options{ClusterID: "t"})
	d := &providers.LoadBalancer{}
	for i := range 5000 {
		d.Nodes = append(d.Nodes, providers.Node{Name: fmt.Sprintf("node-%05d", i)})
	}
	first := p.internTargets(d)
	if n := testing.AllocsPerRun(10, func() { p.internTargets(d) }); n != 0 {
		t.Errorf("an interned node list: %v allocations, want none", n)
	}
	if got := p.internTargets(d); &got[0] != &first[0] {
		t.Error("the interned list was not shared")
	}
	fewer := &providers.LoadBalancer{Nodes: d.Nodes[1:]}
	if got := p.internTargets(fewer); len(got) != 4999 || got[0] != "node-00001" {
		t.Errorf("a different node list gave %d targets from %s", len(got), got[0])
	}
	swapped := &providers.LoadBalancer{Nodes: append([]providers.Node{d.Nodes[1], d.Nodes[0]}, d.Nodes[2:]...)}
	if got := p.internTargets(swapped); !slices.Equal(got, first) {
		t.Error("an unsorted list of the same nodes gave other targets")
	}
}

// TestOperatorCallLogIsBounded: the backend the operator builds from its
// flags keeps only its most recent calls; it used to keep every call twice
// (its own log and the fault core's) for the life of the process, which grew
// by megabytes per pass over 10,000 Services in make bench-scale. The count
// of mutating calls still covers every call.
func TestOperatorCallLogIsBounded(t *testing.T) {
	c := &Config{IPv4Range: "10.128.0.0/14"}
	pp, err := c.Factory()(context.Background(), providers.Options{ClusterID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	p := pp.(*Provider)
	unbounded := New(Options{ClusterID: "t", IPv4: netip.MustParsePrefix("10.128.0.0/14")})
	for i := range 3 * operatorCallLog {
		d := &providers.LoadBalancer{Key: providers.Key{ClusterID: "t", Namespace: "ns", Name: fmt.Sprintf("s%d", i)},
			IPFamilies: []string{"IPv4"}, Ports: []providers.Port{{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080}}}
		for _, q := range []*Provider{p, unbounded} {
			if _, err := q.Ensure(context.Background(), d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := len(p.Calls()); n > operatorCallLog {
		t.Errorf("the operator's backend keeps %d calls, want at most %d", n, operatorCallLog)
	}
	if cap(p.calls) > 2*operatorCallLog || len(p.inj.Calls()) > operatorCallLog {
		t.Errorf("the backend's log holds room for %d calls (want at most %d), the fault core's keeps %d (want at most %d)",
			cap(p.calls), 2*operatorCallLog, len(p.inj.Calls()), operatorCallLog)
	}
	if got, want := p.MutatingCalls(), unbounded.MutatingCalls(); got != want || want < 3*operatorCallLog {
		t.Errorf("mutating calls %d, want %d as the unbounded log counts (at least %d)", got, want, 3*operatorCallLog)
	}
	if n := len(unbounded.Calls()); n < 3*operatorCallLog {
		t.Errorf("a backend built for tests keeps %d calls, want every one", n)
	}
}
