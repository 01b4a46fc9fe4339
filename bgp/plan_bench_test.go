package bgp

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// BenchmarkPlan: one node's plan at bench-bgp's size (1,100 Services with
// their EndpointSlices, one peer, one BGP pool), as the watcher computes it
// on every event.
func BenchmarkPlan(b *testing.B) {
	in := Inputs{Node: testNode("n1", true, nil), Pools: []lbv1.IPPool{pool("routed", "BGP", "10.64.0.0/16")},
		Peers: []lbv1.BGPPeer{peer("tor", "10.88.0.254")}}
	for i := range 1100 {
		name := fmt.Sprintf("s%04d", i)
		in.Services = append(in.Services, svc(name, i >= 1000, fmt.Sprintf("10.64.%d.%d", i/256, i%256)))
		in.EndpointSlices = append(in.EndpointSlices, endpoints(name, map[string]bool{"n1": true, "n2": true, "n3": true}))
	}
	b.ResetTimer()
	for range b.N {
		if got := len(Plan(in)["tor"].Routes); got != 1100 {
			b.Fatalf("%d routes", got)
		}
	}
}

// BenchmarkIncrementalUpdate: one Service's change at the same size, as
// the watcher plans it on a Service or EndpointSlice event.
func BenchmarkIncrementalUpdate(b *testing.B) {
	in := Inputs{Node: testNode("n1", true, nil), Pools: []lbv1.IPPool{pool("routed", "BGP", "10.64.0.0/16")},
		Peers: []lbv1.BGPPeer{peer("tor", "10.88.0.254")}}
	for i := range 1100 {
		name := fmt.Sprintf("s%04d", i)
		in.Services = append(in.Services, svc(name, i >= 1000, fmt.Sprintf("10.64.%d.%d", i/256, i%256)))
		in.EndpointSlices = append(in.EndpointSlices, endpoints(name, map[string]bool{"n1": true, "n2": true, "n3": true}))
	}
	var inc Incremental
	inc.Reset(in)
	added, gone := svc("new", false, "10.64.10.1"), (*corev1.Service)(nil)
	b.ResetTimer()
	for i := range b.N {
		s := added
		if i%2 == 1 {
			s = gone
		}
		if d := inc.Update("ns/new", s, nil); len(d["tor"]) != 1 {
			b.Fatalf("delta %v", d)
		}
	}
}

// BenchmarkIncrementalReset: replanning everything, as the watcher does
// after a change of a node, pool, peer, advertisement or Secret.
func BenchmarkIncrementalReset(b *testing.B) {
	in := Inputs{Node: testNode("n1", true, nil), Pools: []lbv1.IPPool{pool("routed", "BGP", "10.64.0.0/16")},
		Peers: []lbv1.BGPPeer{peer("tor", "10.88.0.254")}}
	for i := range 1100 {
		name := fmt.Sprintf("s%04d", i)
		in.Services = append(in.Services, svc(name, i >= 1000, fmt.Sprintf("10.64.%d.%d", i/256, i%256)))
		in.EndpointSlices = append(in.EndpointSlices, endpoints(name, map[string]bool{"n1": true, "n2": true, "n3": true}))
	}
	b.ResetTimer()
	for range b.N {
		var inc Incremental
		inc.Reset(in)
	}
}
