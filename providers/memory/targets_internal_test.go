package memory

import (
	"fmt"
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
