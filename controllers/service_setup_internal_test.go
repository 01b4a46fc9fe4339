package controllers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
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

// TestStaleCopyKeepsReady: a status write computed from a cached copy that
// predates Portico's own last write (no Ready condition in it yet) changes
// only the conditions it sets, on the real apiserver. Before, a JSON merge
// patch replaced the whole condition list and wiped Ready: a Service with an
// address showed no Ready condition (seen in CI).
func TestStaleCopyKeepsReady(t *testing.T) {
	env := testenv.Start(t)
	ctx := t.Context()
	svc := gen.Service("default", "web", gen.WithClass(providers.Class(memory.Name)), gen.ForAPI())
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	stale := svc.DeepCopy() // what a lagging cache still holds
	svc.Status.Conditions = []metav1.Condition{{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonEnsured, Message: "provisioned", LastTransitionTime: metav1.Now()}}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	r := &ServiceReconciler{Client: env.Client}
	serving := metav1.Condition{Type: ConditionServing, Status: metav1.ConditionFalse, Reason: ReasonNoEndpoints, Message: "none", LastTransitionTime: metav1.Now()}
	if err := r.writeServiceStatus(ctx, stale, stale.Status.LoadBalancer.Ingress, serving); err != nil {
		t.Fatal(err)
	}
	var got corev1.Service
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(svc), &got); err != nil {
		t.Fatal(err)
	}
	if meta.FindStatusCondition(got.Status.Conditions, ConditionReady) == nil || meta.FindStatusCondition(got.Status.Conditions, ConditionServing) == nil {
		t.Errorf("conditions after the write: %+v; want Ready kept and Serving added", got.Status.Conditions)
	}
	if len(got.Status.LoadBalancer.Ingress) != 1 {
		t.Errorf("ingress after the write: %+v; want the address kept", got.Status.LoadBalancer.Ingress)
	}
}

// TestOwnFinalizerNoReconcile: the update that only adds Portico's finalizer
// is the reconcile's own write, made on its way to the backend: it costs no
// second reconcile. Every other change of the finalizers (someone removes
// ours) and of spec, annotations or labels still does.
func TestOwnFinalizerNoReconcile(t *testing.T) {
	p := servicePredicate()
	base := gen.Service("ns", "web", gen.WithClass(providers.Class(memory.Name)))
	withFinalizer := base.DeepCopy()
	withFinalizer.Finalizers = []string{Finalizer}
	withOther := base.DeepCopy()
	withOther.Finalizers = []string{"example.com/keep"}
	both := withOther.DeepCopy()
	both.Finalizers = append(both.Finalizers, Finalizer)
	annotated := withFinalizer.DeepCopy()
	annotated.Annotations = map[string]string{"lb.portico.dev/release": "true"}
	named := withFinalizer.DeepCopy()
	named.Annotations = map[string]string{model.AnnotationBuiltClass: providers.Class(memory.Name)}
	namedAnnotated := named.DeepCopy()
	namedAnnotated.Annotations["lb.portico.dev/release"] = "true"
	renamed := annotated.DeepCopy()
	renamed.Annotations["lb.portico.dev/release"] = "false"
	for _, tc := range []struct {
		name     string
		old, new *corev1.Service
		want     bool
	}{
		{"Portico adds its finalizer", base, withFinalizer, false},
		{"Portico adds its finalizer beside another", withOther, both, false},
		{"someone removes Portico's finalizer", withFinalizer, base, true},
		{"another finalizer added", base, withOther, true},
		{"finalizer and an annotation", base, annotated, true},
		{"Portico adds its finalizer and names the class", base, named, false},
		{"an annotation beside the named class", named, namedAnnotated, true},
		{"an annotation's value", annotated, renamed, true},
		{"an annotation removed", annotated, withFinalizer, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
				t.Errorf("reconcile = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestNodeSetChangesPerWindow: within a batch window every reconcile sees the
// eligible nodes as they were when the window opened; the change reaches the
// desired state of every Service together, when the window closes. Before,
// the set changed at the node event: any reconcile inside the window (an
// EndpointSlice change, the record pass after an Ensure) updated its load
// balancer again, outside the batch.
func TestNodeSetChangesPerWindow(t *testing.T) {
	n1 := gen.Node("n1", "10.0.0.1")
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(n1).Build()
	r := &ServiceReconciler{Client: c, NodeBatchWindow: 200 * time.Millisecond}
	h := r.nodeHandler()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx := t.Context()
	before, err := r.nodes.get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	n2 := gen.Node("n2", "10.0.0.2")
	if err := c.Create(ctx, n2); err != nil {
		t.Fatal(err)
	}
	h.Create(ctx, event.CreateEvent{Object: n2}, q)
	during, err := r.nodes.get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if during.hash != before.hash {
		t.Errorf("the node set changed inside the batch window: %d nodes, was %d", len(during.nodes), len(before.nodes))
	}
	time.Sleep(400 * time.Millisecond)
	after, err := r.nodes.get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.nodes) != 2 {
		t.Errorf("after the window: %d nodes, want 2", len(after.nodes))
	}
}
