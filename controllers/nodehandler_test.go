package controllers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// TestNodeEventsShareOnePass: node events within a batch window cost one
// listing of the Services, and the initial list of Nodes at start none.
// Before, every node event listed and enqueued every Service: with 5,000
// Nodes at start, 5,000 x 10,000 enqueues kept the Node watch from syncing
// and the operator exited.
func TestNodeEventsShareOnePass(t *testing.T) {
	var lists atomic.Int32
	svcs := []client.Object{}
	for _, n := range []string{"a", "b", "c"} {
		svcs = append(svcs, gen.Service("ns", n, gen.WithClass(providers.Class(memory.Name))))
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(svcs...).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*corev1.ServiceList); ok {
				lists.Add(1)
			}
			return cl.List(ctx, list, opts...)
		},
	}).Build()
	r := &ServiceReconciler{Client: c, NodeBatchWindow: 50 * time.Millisecond,
		Providers: map[string]providers.Provider{providers.Class(memory.Name): memory.New(memory.Options{ClusterID: "t"})}}
	h := r.nodeHandler()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx := t.Context()

	for range 1000 {
		h.Create(ctx, event.CreateEvent{Object: gen.Node("n", "10.0.0.1"), IsInInitialList: true}, q)
	}
	time.Sleep(150 * time.Millisecond)
	if n := lists.Load(); n != 0 || q.Len() != 0 {
		t.Fatalf("the initial list of 1,000 Nodes listed Services %d times and queued %d", n, q.Len())
	}

	for range 1000 {
		h.Create(ctx, event.CreateEvent{Object: gen.Node("n", "10.0.0.1")}, q)
		h.Delete(ctx, event.DeleteEvent{Object: gen.Node("n", "10.0.0.1")}, q)
	}
	deadline := time.Now().Add(2 * time.Second)
	for q.Len() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := lists.Load(); n != 1 {
		t.Errorf("2,000 node events in one window listed the Services %d times, want 1", n)
	}
	if q.Len() != 3 {
		t.Errorf("queued %d Services, want each of the 3 once", q.Len())
	}
}
