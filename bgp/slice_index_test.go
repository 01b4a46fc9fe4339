package bgp

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/model"
)

// walkCache is an informer cache whose reads go to a WalkCounting client.
type walkCache struct {
	cache.Cache
	c *kubeindextest.WalkCounting
}

func (w walkCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return w.c.Get(ctx, key, obj, opts...)
}

func (w walkCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return w.c.List(ctx, list, opts...)
}

// TestServiceReadsOnlyItsSlices: a changed Service's replan reads its
// EndpointSlices through the cache's index, not by a label selector that
// walks every slice in the namespace (each endpoint change of a
// 10,000-Service cluster walked them all on every node).
func TestServiceReadsOnlyItsSlices(t *testing.T) {
	ctx := context.Background()
	web := svc("web", true, "192.0.2.1")
	web.Spec.LoadBalancerClass = ptr.To(model.LocalClass)
	slice := endpoints("web", map[string]bool{"n1": true})
	objs := []client.Object{web, &slice,
		&lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: lbv1.LoadBalancerSpec{Class: model.LocalClass}}}
	const others = 300
	for i := range others {
		es := endpoints(fmt.Sprintf("other-%d", i), map[string]bool{"n1": true})
		objs = append(objs, &es)
	}
	c := &kubeindextest.WalkCounting{Client: kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).WithObjects(objs...).Build()}
	w := &Watcher{Self: "n1", Cache: walkCache{c: c}}
	got, eps, err := w.service(ctx, "ns/web")
	if err != nil || got == nil {
		t.Fatalf("service: %v, %v", got, err)
	}
	if len(eps) != 1 || eps[0].Name != slice.Name {
		t.Fatalf("read %d slices, want web's one", len(eps))
	}
	if c.Walked > 1 {
		t.Errorf("reading one Service's EndpointSlices walked %d slices (%d others in its namespace), want 1", c.Walked, others)
	}
}
