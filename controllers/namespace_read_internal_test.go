package controllers

import (
	"context"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// namespaceCopyCounter models controller-runtime's informer cache reader
// (pkg/cache/internal.CacheReader.Get): without client.UnsafeDisableDeepCopy
// every Get returns a deep copy of the cached object. It counts the
// Namespaces copied.
type namespaceCopyCounter struct {
	client.Client
	copies int
}

func (c *namespaceCopyCounter) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	var o client.GetOptions
	o.ApplyOptions(opts)
	if _, ok := obj.(*corev1.Namespace); ok && (o.UnsafeDisableDeepCopy == nil || !*o.UnsafeDisableDeepCopy) {
		c.copies++
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestDesiredCopiesNoNamespace: computing a Service's desired load balancer
// reads its namespace's labels from the cache in place. Before, every
// reconcile that reached the backend deep-copied the cached Namespace for
// its labels: at 10,000 Services, 10,000 copies per node change.
func TestDesiredCopiesNoNamespace(t *testing.T) {
	const class = "lb.portico.dev/memory"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Labels: map[string]string{corev1.LabelMetadataName: "shop", "team": "a"}}}
	svc := gen.Service("shop", "web", gen.WithClass(class))
	c := &namespaceCopyCounter{Client: kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).
		WithObjects(ns, svc).Build()}
	r := &ServiceReconciler{Client: c, ClusterID: "test",
		Providers: map[string]providers.Provider{class: memory.New(memory.Options{ClusterID: "test"})}}
	d, _, err := r.desired(context.Background(), svc, class)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(d.NamespaceLabels, ns.Labels) {
		t.Errorf("namespace labels %v, want %v", d.NamespaceLabels, ns.Labels)
	}
	if c.copies != 0 {
		t.Errorf("the desired load balancer deep-copied the cached Namespace %d times, want 0", c.copies)
	}
}
