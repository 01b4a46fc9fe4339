package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
)

func readyNode(name, ip string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
	}}
}

// TestNodeSetSharedUntilNodesChange: every Service's desired state gets the
// same slice of eligible nodes, built once per node change rather than per
// reconcile, and its fingerprint stands for the nodes in the hash: a node
// change changes every Cluster-policy Service's hash, nothing else does.
func TestNodeSetSharedUntilNodesChange(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(readyNode("b", "10.0.0.2"), readyNode("a", "10.0.0.1")).Build()
	var s nodeSnapshots
	first, err := s.get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.nodes) != 2 || first.nodes[0].Name != "a" {
		t.Fatalf("nodes %+v, want a and b sorted", first.nodes)
	}
	again, _ := s.get(ctx, c)
	if again != first || s.builds != 1 {
		t.Fatalf("unchanged nodes were listed again (%d builds)", s.builds)
	}

	svc := gen.Service("ns", "web", gen.ForAPI())
	svc.Spec.Ports[0].NodePort = 30080
	desired := func(set *nodeSet) (*providers.LoadBalancer, string) {
		d, err := Desired(DesiredInput{ClusterID: "c", Class: "lb.portico.dev/memory", Service: svc, EligibleNodes: set.nodes})
		if err != nil {
			t.Fatal(err)
		}
		return d, hashDesired(d, set.hash)
	}
	d1, h1 := desired(first)
	if &d1.Nodes[0] != &first.nodes[0] {
		t.Error("the desired state copied the shared node set")
	}
	if err := c.Create(ctx, readyNode("c", "10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	if same, _ := s.get(ctx, c); same != first {
		t.Fatal("the set was rebuilt without a node event")
	}
	s.invalidate()
	second, _ := s.get(ctx, c)
	if len(second.nodes) != 3 || s.builds != 2 {
		t.Fatalf("after a node event: %d nodes, %d builds", len(second.nodes), s.builds)
	}
	_, h2 := desired(second)
	if h2 == h1 {
		t.Error("a new node left the desired hash unchanged")
	}
	if _, h3 := desired(second); h3 != h2 {
		t.Error("the hash is not deterministic")
	}
}
