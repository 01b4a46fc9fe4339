package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
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

// informerCache models controller-runtime's informer cache: the cached
// Services are pointers in an informer's store, GetInformer returns that
// informer, and List, as pkg/cache/internal.CacheReader.List does, builds
// the list's Items from the stored objects: deep copies, or with
// client.UnsafeDisableDeepCopy copies of each cached Service's top-level
// struct (apimeta.SetList).
type informerCache struct {
	client.Client
	store toolscache.Store
}

func newInformerCache(objs []client.Object) *informerCache {
	c := &informerCache{Client: fake.NewClientBuilder().WithScheme(scheme.New()).Build(),
		store: toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)}
	for _, o := range objs {
		if err := c.store.Add(o); err != nil {
			panic(err)
		}
	}
	return c
}

func (c *informerCache) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l, ok := list.(*corev1.ServiceList)
	if !ok {
		return fmt.Errorf("%T not cached", list)
	}
	var o client.ListOptions
	o.ApplyOptions(opts)
	objs := c.store.List()
	l.Items = make([]corev1.Service, 0, len(objs))
	for _, obj := range objs {
		svc := obj.(*corev1.Service)
		if o.UnsafeDisableDeepCopy == nil || !*o.UnsafeDisableDeepCopy {
			svc = svc.DeepCopy()
		}
		l.Items = append(l.Items, *svc)
	}
	return nil
}

func (c *informerCache) GetInformer(_ context.Context, obj client.Object, _ ...crcache.InformerGetOption) (crcache.Informer, error) {
	if _, ok := obj.(*corev1.Service); !ok {
		return nil, fmt.Errorf("%T not cached", obj)
	}
	return storeInformer{store: c.store}, nil
}

// storeInformer is a synced informer; only its store is read.
type storeInformer struct {
	crcache.Informer
	store toolscache.Store
}

func (i storeInformer) GetStore() toolscache.Store { return i.store }
func (i storeInformer) HasSynced() bool            { return true }

// bytesPerService is what f allocates, on average over runs, per cached
// Service.
func bytesPerService(n int, f func()) float64 {
	return float64(allocatedBytes(5, f)) / float64(n)
}

// TestWholeCacheReadsCopyNoStruct: the passes that read every cached
// Service (the scrape of portico_service_not_ready_seconds, the node batch
// window's enqueue-all, the pending retry) read the informer's store in
// place. A List into a ServiceList, even without deep copies, copies each
// cached Service's top-level struct (about 1 kB): 10 MB at 10,000 Services
// on every scrape and every node batch window, garbage made while the flap
// phase of bench-scale set the operator's peak RSS.
func TestWholeCacheReadsCopyNoStruct(t *testing.T) {
	ctx := context.Background()
	const n = 10000
	c := newInformerCache(manyServices(n, func(int) bool { return true }))
	classes := func() model.Classes { return model.Classes{Enabled: []string{"lb.portico.dev/memory"}} }
	const bound = 64 // bytes per cached Service: a pointer in a slice, not a struct

	m := NewNotReadyMetric()
	m.SetSource(c, classes)
	ch := make(chan prometheus.Metric, n)
	if b := bytesPerService(n, func() { m.Collect(ch) }); b > bound {
		t.Errorf("a scrape allocates %.0f bytes per cached Service, want at most %d", b, bound)
	}
	if len(ch) != 0 {
		t.Errorf("%d not-ready series of ready Services", len(ch))
	}

	r := &ServiceReconciler{Client: c, Providers: map[string]providers.Provider{"lb.portico.dev/memory": memory.New(memory.Options{})}}
	class := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "lb.portico.dev/memory"}}
	if b := bytesPerService(n, func() { r.pendingServices(ctx, class) }); b > bound {
		t.Errorf("the pending retry allocates %.0f bytes per cached Service, want at most %d", b, bound)
	}
	var managed int
	if b := bytesPerService(n, func() { managed = len(r.managedServices(ctx)) }); b > bound {
		t.Errorf("the enqueue-all allocates %.0f bytes per cached Service, want at most %d", b, bound)
	}
	if managed != n {
		t.Errorf("managed Services: %d, want %d", managed, n)
	}
}
