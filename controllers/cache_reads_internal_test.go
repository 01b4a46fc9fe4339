package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// copyCountingCache models controller-runtime's informer cache reader
// (pkg/cache/internal.CacheReader.List): without client.UnsafeDisableDeepCopy
// every listed object is a deep copy of the cached one; with it, the cached
// object itself. It counts the deep copies.
type copyCountingCache struct {
	client.Client
	deepCopies int
}

func (c *copyCountingCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	var o client.ListOptions
	o.ApplyOptions(opts)
	if o.UnsafeDisableDeepCopy == nil || !*o.UnsafeDisableDeepCopy {
		if l, ok := list.(*corev1.ServiceList); ok {
			c.deepCopies += len(l.Items)
		}
	}
	return nil
}

func manyServices(n int, ready func(i int) bool) []client.Object {
	var out []client.Object
	for i := range n {
		st := metav1.ConditionFalse
		if ready(i) {
			st = metav1.ConditionTrue
		}
		out = append(out, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: fmt.Sprintf("s%d", i)},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("lb.portico.dev/memory")},
			Status: corev1.ServiceStatus{Conditions: []metav1.Condition{{Type: ConditionReady, Status: st, Reason: "Pending",
				LastTransitionTime: metav1.NewTime(time.Now())}}},
		})
	}
	return out
}

// TestWholeCacheReadsCopyNothing: the passes that read every cached Service
// (a metrics scrape of portico_service_not_ready_seconds, the node batch
// window's enqueue-all, the retry of pending Services) read the cache in
// place. At 10,000 Services each deep-copied the whole Service cache (25 MB
// at bench-scale, on every scrape and every node batch window), which set the
// operator's peak memory.
func TestWholeCacheReadsCopyNothing(t *testing.T) {
	ctx := context.Background()
	const n = 50
	objs := manyServices(n, func(i int) bool { return i%5 != 0 })
	cache := &copyCountingCache{Client: fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()}
	classes := func() model.Classes { return model.Classes{Enabled: []string{"lb.portico.dev/memory"}} }

	m := NewNotReadyMetric()
	m.SetSource(cache, classes)
	if got := testutil.CollectAndCount(m); got != n/5 {
		t.Errorf("scrape: %d not-ready series, want %d", got, n/5)
	}
	if cache.deepCopies != 0 {
		t.Errorf("a scrape deep-copied %d cached Services", cache.deepCopies)
	}

	cache.deepCopies = 0
	r := &ServiceReconciler{Client: cache, Providers: map[string]providers.Provider{"lb.portico.dev/memory": memory.New(memory.Options{})}}
	if got := len(r.managedServices(ctx)); got != n {
		t.Errorf("managed Services: %d, want %d", got, n)
	}
	if got := len(r.pendingServices(ctx, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "lb.portico.dev/memory"}})); got != n/5 {
		t.Errorf("pending Services: %d, want %d", got, n/5)
	}
	if cache.deepCopies != 0 {
		t.Errorf("enqueue-all and the pending retry deep-copied %d cached Services", cache.deepCopies)
	}
}
