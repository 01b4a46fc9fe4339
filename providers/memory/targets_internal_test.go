package memory

import (
	"fmt"
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
