package controllers

import (
	"context"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
)

// SetupWithManager wires the reconciler's watches:
//   - Services of type LoadBalancer (or still carrying the finalizer), on spec,
//     metadata and deletion changes but not on status writes;
//   - LoadBalancer records, on deletion only, so a deleted record is rebuilt;
//   - Nodes, on changes that affect eligibility, batched per NodeBatchWindow;
//   - EndpointSlices, mapped to their Service;
//   - a channel that NotifyPending feeds when a backend frees capacity;
//   - a channel that Reensure feeds when a backend's own objects changed;
//   - a channel that releases record passes parked while Services awaited
//     their first address (recordpass.go).
//
// Unless opts names one, the reconcile's logger defers its keys and values
// until a line is written (reconcile_logger.go).
func (r *ServiceReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	_, err := r.newController(mgr, opts)
	return err
}

// newController builds the Service controller SetupWithManager registers.
func (r *ServiceReconciler) newController(mgr ctrl.Manager, opts controller.Options) (controller.Controller, error) {
	for class, p := range r.Providers {
		r.Providers[class] = instrumented{Provider: p, m: r.Metrics, timeout: r.CallTimeout}
	}
	r.slots = newFairShare(opts.MaxConcurrentReconciles, len(r.Providers))
	r.pending = make(chan event.GenericEvent, 128)
	r.reensured = make(chan event.GenericEvent, 1)
	r.addressing.released = make(chan event.GenericEvent, 1)
	r.addressing.quiet = r.RecordPassQuiet
	const name = "service"
	if opts.LogConstructor == nil {
		opts.LogConstructor = reconcileLogConstructor(mgr.GetLogger(), name)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(&corev1.Service{}, builder.WithPredicates(servicePredicate())).
		Watches(&lbv1.LoadBalancer{}, r.recordHandler()).
		Watches(&corev1.Node{}, r.nodeHandler()).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(sliceToService)).
		WatchesRawSource(source.Channel(r.pending, handler.EnqueueRequestsFromMapFunc(r.pendingServices))).
		WatchesRawSource(source.Channel(r.reensured, handler.EnqueueRequestsFromMapFunc(r.marked))).
		WatchesRawSource(source.Channel(r.addressing.released, r.addressing.releaseHandler())).
		WithOptions(opts).
		Build(r)
}

// recordHandler rebuilds a LoadBalancer record that was deleted while its
// Service still wants a load balancer; creations and status writes (our own)
// need no reconcile.
func (r *ServiceReconciler) recordHandler() handler.EventHandler {
	return handler.Funcs{
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			key := client.ObjectKeyFromObject(e.Object)
			r.forgetApplied(key)
			r.forgetOwn(key)
			q.Add(reconcile.Request{NamespacedName: key})
		},
	}
}

// NotifyPending asks the controller to retry every Service of class that has
// no address yet, e.g. when the local backend frees an address. It never
// blocks: a full channel already holds a retry.
func (r *ServiceReconciler) NotifyPending(class string) {
	if r.pending == nil {
		return
	}
	select {
	case r.pending <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: class}}}:
	default:
	}
}

// Reensure asks the controller to ensure these Services again although
// nothing about them changed, e.g. when the IPPool holding a local Service's
// address is gone, or a BGP session that carries it went down. It never
// blocks and never loses a Service.
func (r *ServiceReconciler) Reensure(services []types.NamespacedName) {
	if r.reensured == nil {
		return
	}
	for _, key := range services {
		r.markReensure(key)
	}
	// One event stands for every marked Service (see marked): a burst of
	// thousands is never dropped, and a full channel already holds an
	// event that will find these marks.
	select {
	case r.reensured <- event.GenericEvent{Object: &metav1.PartialObjectMetadata{}}:
	default:
	}
}

// marked returns the Services marked by Reensure and not yet ensured.
func (r *ServiceReconciler) marked(context.Context, client.Object) []reconcile.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]reconcile.Request, 0, len(r.reensure))
	for key := range r.reensure {
		out = append(out, reconcile.Request{NamespacedName: key})
	}
	return out
}

func (r *ServiceReconciler) pendingServices(ctx context.Context, obj client.Object) []reconcile.Request {
	class := obj.GetName()
	var out []reconcile.Request
	cls := r.Classes()
	for _, svc := range r.managedServices(ctx) {
		if cls.For(svc) != class {
			continue
		}
		if c := meta.FindStatusCondition(svc.Status.Conditions, ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)})
		}
	}
	return out
}

// managedServices returns the Services an enabled class serves: the cached
// objects themselves (eachCachedService), which callers only read (their
// keys, class and conditions). A deep copy of the whole cache per node
// batch window was tens of megabytes at 10,000 Services, a shallow copy of
// each still megabytes.
func (r *ServiceReconciler) managedServices(ctx context.Context) []*corev1.Service {
	var out []*corev1.Service
	cls := r.Classes()
	if err := eachCachedService(ctx, r.wholeCache(), func(s *corev1.Service) {
		if cls.For(s) != "" {
			out = append(out, s)
		}
	}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Services")
		return nil
	}
	return out
}

// wholeCache is the reader of the passes over every cached Service: Cache,
// or Client when it is not set.
func (r *ServiceReconciler) wholeCache() client.Reader {
	if r.Cache != nil {
		return r.Cache
	}
	return r.Client
}

func servicePredicate() predicate.Predicate {
	relevant := func(o client.Object) bool {
		svc, ok := o.(*corev1.Service)
		return ok && (svc.Spec.Type == corev1.ServiceTypeLoadBalancer || slices.Contains(svc.Finalizers, Finalizer))
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return relevant(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return relevant(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return relevant(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !relevant(e.ObjectOld) && !relevant(e.ObjectNew) {
				return false
			}
			// Services do not bump metadata.generation on spec changes,
			// so compare the spec itself; status-only writes (our own)
			// are ignored.
			o, n := e.ObjectOld, e.ObjectNew
			return !equality.Semantic.DeepEqual(o.(*corev1.Service).Spec, n.(*corev1.Service).Spec) ||
				annotationsChanged(o.GetAnnotations(), n.GetAnnotations()) ||
				!equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) ||
				finalizersChanged(o.GetFinalizers(), n.GetFinalizers()) ||
				!n.GetDeletionTimestamp().IsZero()
		},
	}
}

// annotationsChanged reports a change of the annotations other than the
// class the operator names beside its finalizer (its own write, made in the
// reconcile that goes on to the backend). It runs on every Service update,
// the operator's own status writes included, so it copies nothing.
func annotationsChanged(o, n map[string]string) bool {
	return !subsetExceptBuiltClass(o, n) || !subsetExceptBuiltClass(n, o)
}

// subsetExceptBuiltClass reports whether every annotation of a but the
// built class is in b with the same value.
func subsetExceptBuiltClass(a, b map[string]string) bool {
	for k, v := range a {
		if w, ok := b[k]; k != model.AnnotationBuiltClass && (!ok || w != v) {
			return false
		}
	}
	return true
}

// finalizersChanged reports a change of the finalizers other than the
// addition of Portico's own: the reconcile that adds it goes on to the
// backend in the same pass, so its own write needs no second reconcile.
func finalizersChanged(o, n []string) bool {
	if slices.Equal(o, n) {
		return false
	}
	added := !slices.Contains(o, Finalizer) && slices.Contains(n, Finalizer)
	return !added || !slices.Equal(o, slices.DeleteFunc(slices.Clone(n), func(f string) bool { return f == Finalizer }))
}

// nodeHandler enqueues every managed Service after NodeBatchWindow when a
// node change can alter backends; changes within a window share one pass, so
// node churn reaches each load balancer at most once per window. The
// eligible-node set changes only when the window closes: a reconcile inside
// the window for another reason (an EndpointSlice, the record pass) sees the
// nodes as they were and leaves the backend alone.
func (r *ServiceReconciler) nodeHandler() handler.EventHandler {
	// One pass over the managed Services per batch window, however many
	// node events arrive in it: a thousand node changes cost one List, not
	// a thousand.
	var mu sync.Mutex
	scheduled := false
	enqueueAll := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		mu.Lock()
		defer mu.Unlock()
		if scheduled {
			return
		}
		scheduled = true
		time.AfterFunc(r.NodeBatchWindow, func() {
			mu.Lock()
			scheduled = false
			mu.Unlock()
			r.nodes.invalidate()
			for _, svc := range r.managedServices(ctx) {
				q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)})
			}
		})
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			// The initial list of Nodes at start needs no pass: every
			// Service is reconciled at start anyway, after the caches
			// synced.
			if e.IsInInitialList {
				r.nodes.invalidate()
				return
			}
			enqueueAll(ctx, q)
		},
		DeleteFunc: func(ctx context.Context, _ event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueueAll(ctx, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			o, okO := e.ObjectOld.(*corev1.Node)
			n, okN := e.ObjectNew.(*corev1.Node)
			if okO && okN && model.NodeChanged(o, n) {
				enqueueAll(ctx, q)
			}
		},
	}
}

func sliceToService(_ context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[discoveryv1.LabelServiceName]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: obj.GetNamespace(), Name: name}}}
}
