package controllers

import (
	"context"
	"fmt"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
)

// TestDesiredReadsOnlyItsSlices: a reconcile reads its Service's
// EndpointSlices through the cache's index, not by a label selector, which
// the informer cache answers by walking every slice in the namespace (at
// bench-reconcile's 2,500 Services in one namespace, 2,500 slices walked per
// reconcile; a quarter of the operator's CPU in its burst).
func TestDesiredReadsOnlyItsSlices(t *testing.T) {
	ctx := context.Background()
	const others = 300
	objs := []client.Object{
		gen.Node("n1", "10.0.0.1"),
		gen.EndpointSlice("web", "app", "http", 8080, gen.Endpoint{IP: "10.1.0.1", Node: "n1", Ready: true}),
	}
	for i := range others {
		objs = append(objs, gen.EndpointSlice("web", fmt.Sprintf("other-%d", i), "http", 8080, gen.Endpoint{IP: "10.1.1.1", Node: "n1", Ready: true}))
	}
	c := &kubeindextest.WalkCounting{Client: kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).WithObjects(objs...).Build()}
	r := &ServiceReconciler{Client: c}
	svc := gen.Service("web", "app", gen.WithClass("lb.portico.dev/memory"))
	d, _, err := r.desired(ctx, svc, "lb.portico.dev/memory")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Endpoints) == 0 {
		t.Fatalf("desired has no endpoints: the Service's own slice was not read")
	}
	if c.Walked > 1 {
		t.Errorf("reading one Service's EndpointSlices walked %d slices (%d others in its namespace), want 1", c.Walked, others)
	}
}
