// Package controllers holds the Service controller, which drives a backend
// per loadBalancerClass. Backends with controllers of their own (the local
// backend's IPPool status) register them through
// providers.ControllerSetup.
package controllers

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// Finalizer keeps a Service until its load balancer is confirmed deleted.
const Finalizer = "lb.portico.dev/cleanup"

// Pricer prices a provider's cost inputs; nil disables cost reporting. A
// cost returned together with an error is a last good price kept while the
// price data is bad: it is shown, and the Priced condition is False.
type Pricer interface {
	Price(class string, in providers.CostInputs) (*lbv1.CostStatus, error)
}

// UsageMeter returns a load balancer's metered usage (a usage.Tracker);
// nil leaves cost to the price list's estimates. Usage returned together
// with an error is the last good reading, kept while the metrics fail.
type UsageMeter interface {
	Usage(in providers.CostInputs) (*providers.Usage, error)
}

// CostMetrics exports each load balancer's hourly cost
// (portico_loadbalancer_hourly_cost); a nil cost removes the series.
type CostMetrics interface {
	Set(namespace, service, class string, cost *lbv1.CostStatus) error
	Delete(namespace, service string)
}

// RBAC of the operator, generated into config/rbac by "make manifests".
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=update;patch
// +kubebuilder:rbac:groups="",resources=nodes;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=lb.portico.dev,resources=loadbalancers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=lb.portico.dev,resources=loadbalancers/status,verbs=get;update;patch
// The metrics endpoint authenticates and authorizes its callers.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=portico-system,resources=configmaps,verbs=get
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=portico-system,resources=leases,verbs=get;list;watch;create;update;patch

// ServiceReconciler reconciles LoadBalancer Services of Portico's classes.
type ServiceReconciler struct {
	Client client.Client
	// Cache is the manager's cache, read in place by the passes over every
	// Service (the node batch window, the pending retry); nil means Client.
	Cache       client.Reader
	Recorder    events.EventRecorder
	Metrics     *Metrics
	Pricer      Pricer
	Usage       UsageMeter
	CostMetrics CostMetrics

	// Providers maps each enabled class to its backend.
	Providers map[string]providers.Provider
	// DefaultClass takes Services without spec.loadBalancerClass; empty
	// leaves them to another controller.
	DefaultClass string
	ClusterID    string

	// NodeBatchWindow coalesces node churn: a node change reaches each load
	// balancer at most once per window.
	NodeBatchWindow time.Duration
	// ResyncPeriod is how often an unchanged load balancer is re-ensured to
	// repair drift.
	ResyncPeriod time.Duration
	// ConfigErrorBackoff is the retry delay for problems the user must fix.
	ConfigErrorBackoff time.Duration
	// RetryBase and RetryMax bound the exponential backoff for transient
	// provider errors that suggest no delay.
	RetryBase, RetryMax time.Duration
	// CallTimeout bounds every backend call; expiry is a retryable error.
	// Zero means no bound.
	CallTimeout time.Duration
	// RecordPassQuiet is how long no Service must have been on its way to
	// its first address before the record passes go (recordpass.go); zero
	// means DefaultRecordPassQuiet.
	RecordPassQuiet time.Duration

	pending chan event.GenericEvent
	// reensured carries one event for every Service marked by Reensure.
	reensured chan event.GenericEvent
	slots     fairShare

	// nodes is the eligible-node set shared by every Service's desired
	// state, rebuilt after node changes.
	nodes nodeSnapshots
	// addressing holds record passes back while Services await their
	// first address (recordpass.go).
	addressing addressWork

	mu      sync.Mutex
	applied map[types.NamespacedName]applied
	// reensure holds Services whose next reconcile must call the backend
	// even if an Ensure in flight remembers them as applied (Reensure).
	reensure map[types.NamespacedName]bool
	failures map[types.NamespacedName]int
	// own is what this process wrote to new Services' metadata and
	// records, while the cache may not show it (trustOwnWrites).
	own map[types.NamespacedName]ownWrites
}

// Reconcile brings one Service's load balancer to its desired state.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	start := time.Now()
	defer func() {
		result := "ok"
		if retErr != nil {
			result = "error"
		}
		r.Metrics.ReconcileDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	}()

	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	// The logger in ctx already names the Service ("Service", "namespace"
	// and "name", as controller-runtime's builder does); adding them again
	// would repeat the keys in every line (reconcile_logger.go).
	record, err := r.getRecord(ctx, svc)
	if err != nil {
		return ctrl.Result{}, err
	}
	record = r.trustOwnWrites(svc, record)
	class := r.classFor(svc)
	built := builtClass(svc, record)

	// One slow backend holds at most its share of the workers; the
	// others stay free for the other classes.
	release, ok := r.slots.acquire(cmp.Or(class, built))
	if !ok {
		return ctrl.Result{RequeueAfter: r.jitter(fairShareRetry)}, nil
	}
	defer release()

	// A load balancer goes only with its Service or its type, as in the
	// upstream service controller; never because configuration changed.
	if !svc.DeletionTimestamp.IsZero() || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return r.cleanup(ctx, svc, record, built)
	}
	if class == "" || built != "" && built != class && svc.Spec.LoadBalancerClass == nil {
		return r.notServed(ctx, svc, record, built)
	}
	if built != "" && built != class {
		r.event(svc, corev1.EventTypeNormal, ReasonClassChanged, "Delete", "load balancer class changed from %s to %s; removing the old load balancer", built, class)
		if res, err := r.cleanupBackend(ctx, svc, record, built); err != nil || !res.IsZero() {
			return res, err
		}
		record = nil
	}
	// A Service on its way to its first address holds back the record
	// passes of others until it has it (recordpass.go).
	if len(svc.Status.LoadBalancer.Ingress) == 0 && !r.wasApplied(req.NamespacedName) {
		r.addressing.set(req.NamespacedName, true)
		defer r.addressing.set(req.NamespacedName, false)
	}
	if err := r.ensureFinalizerAndRecord(ctx, svc, class, &record); err != nil {
		return ctrl.Result{}, err
	}
	return r.ensure(ctx, svc, class, record)
}

// builtClass is the class that built (or is building) svc's load balancer:
// its record's, else, while no record exists, the class the operator wrote
// beside its finalizer (model.AnnotationBuiltClass); "" when neither says.
func builtClass(svc *corev1.Service, record *lbv1.LoadBalancer) string {
	if record != nil {
		return record.Spec.Class
	}
	if controllerutil.ContainsFinalizer(svc, Finalizer) {
		return svc.Annotations[model.AnnotationBuiltClass]
	}
	return ""
}

// recordFirst reports whether class needs the Service's record before any
// backend call: the local backend's other parts (the forwarders, the
// allocator's rebuild, the IPPool status) know a Service of theirs only by
// its record (model.Recorded). A backend that stands for a cloud does not:
// its load balancer carries the ownership marks, and until the record exists
// the class is named beside the finalizer, so its record follows the
// address (the record pass) and a new Service's address costs two writes.
func recordFirst(class string) bool {
	return class == model.LocalClass
}

// ensureFinalizerAndRecord adds the finalizer and names class beside it
// (model.AnnotationBuiltClass) while svc has no record; for a class that
// needs its record first (recordFirst), a new Service's record is created
// together with that patch. Both precede any backend call; neither depends
// on the other, so the two writes go out together.
func (r *ServiceReconciler) ensureFinalizerAndRecord(ctx context.Context, svc *corev1.Service, class string, record **lbv1.LoadBalancer) error {
	from := svc.ResourceVersion
	named := *record != nil || svc.Annotations[model.AnnotationBuiltClass] == class
	if controllerutil.ContainsFinalizer(svc, Finalizer) && named {
		return nil
	}
	if *record != nil || !recordFirst(class) {
		if err := r.ensureFinalizer(ctx, svc, class); err != nil {
			return err
		}
		r.wroteOwn(svc, from, class, nil)
		return nil
	}
	// The record's owner reference is read from a copy: the finalizer
	// patch rewrites svc meanwhile.
	owner := svc.DeepCopy()
	var rec *lbv1.LoadBalancer
	var recErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec, recErr = r.ensureRecord(ctx, owner, nil, class)
	}()
	finErr := r.ensureFinalizer(ctx, svc, class)
	<-done
	if finErr != nil {
		return finErr
	}
	if recErr != nil {
		return recErr
	}
	*record = rec
	r.wroteOwn(svc, from, class, rec)
	return nil
}

// ownWrites is what this process wrote to a new Service's metadata and
// record, for the reconciles that read a cache not showing it yet
// (kube-controller-manager's EndpointSlice for a new Service queues one at
// once).
type ownWrites struct {
	uid types.UID
	// patchedFrom is the Service's resourceVersion that the finalizer
	// patch applied to: a cached copy still at it predates the patch.
	patchedFrom string
	// class is the class the finalizer patch named.
	class string
	// record is the record this process created.
	record *lbv1.LoadBalancer
}

// wroteOwn records that this process added the finalizer naming class to
// svc, patching it from resourceVersion from, and created rec (nil: none).
func (r *ServiceReconciler) wroteOwn(svc *corev1.Service, from, class string, rec *lbv1.LoadBalancer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.own == nil {
		r.own = map[types.NamespacedName]ownWrites{}
	}
	r.own[client.ObjectKeyFromObject(svc)] = ownWrites{uid: svc.UID, patchedFrom: from, class: class, record: rec}
}

// wroteOwnRecord records that this process created rec for svc, beside the
// finalizer it just added (a reconcile soon after may read a cache showing
// neither). A record created later, in the record pass, is not kept: the
// cache has long shown the finalizer, and nothing after the pass needs the
// record before the cache shows it (10,000 records held until the resync
// would cost 20 MB).
func (r *ServiceReconciler) wroteOwnRecord(svc *corev1.Service, rec *lbv1.LoadBalancer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := client.ObjectKeyFromObject(svc)
	if w, ok := r.own[key]; ok && w.uid == svc.UID {
		w.record = rec
		r.own[key] = w
	}
}

// trustOwnWrites returns record, or the record this process created for svc
// when the cache does not show it yet, and adds to svc the finalizer this
// process added when the cached copy predates that patch: a reconcile on a
// lagging cache writes neither again (a finalizer patch on a stale copy is
// refused by its optimistic lock; a second create finds the record exists).
// Once the cache shows both, it is the cache that counts.
func (r *ServiceReconciler) trustOwnWrites(svc *corev1.Service, record *lbv1.LoadBalancer) *lbv1.LoadBalancer {
	key := client.ObjectKeyFromObject(svc)
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.own[key]
	switch {
	case !ok:
		return record
	case w.uid != svc.UID:
		release(&r.own, key)
		return record
	}
	stale := svc.ResourceVersion == w.patchedFrom
	if stale {
		controllerutil.AddFinalizer(svc, Finalizer)
		setBuiltClass(svc, w.class)
	}
	if record == nil && w.record != nil && metav1.IsControlledBy(w.record, svc) {
		return w.record.DeepCopy()
	}
	if !stale {
		release(&r.own, key)
	}
	return record
}

// notServed handles a LoadBalancer Service whose class this operator does
// not serve (any more). A Service that was never Portico's is left alone. One
// that was (its record or finalizer says so) keeps its load balancer,
// finalizer and address, with a condition and an Event that say why and how
// to release it, until the user releases it (lb.portico.dev/release=true),
// deletes it or changes its type.
func (r *ServiceReconciler) notServed(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer, built string) (ctrl.Result, error) {
	if record == nil && !controllerutil.ContainsFinalizer(svc, Finalizer) {
		return ctrl.Result{}, nil
	}
	if svc.Annotations[model.AnnotationRelease] == "true" {
		ctrl.LoggerFrom(ctx).Info("Releasing a load balancer on request", "class", built)
		return r.cleanup(ctx, svc, record, built)
	}
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonClassNotServed,
		ObservedGeneration: svc.Generation, Message: r.notServedMessage(svc, built)}
	prev := meta.FindStatusCondition(svc.Status.Conditions, ConditionReady)
	if prev == nil || prev.Reason != cond.Reason || prev.Message != cond.Message {
		r.event(svc, corev1.EventTypeWarning, ReasonClassNotServed, "Keep", "%s", cond.Message)
	}
	r.forgetApplied(client.ObjectKeyFromObject(svc))
	return ctrl.Result{}, r.writeServiceStatus(ctx, svc, svc.Status.LoadBalancer.Ingress, cond)
}

// notServedMessage says why svc is not served and how to release it.
func (r *ServiceReconciler) notServedMessage(svc *corev1.Service, built string) string {
	classes := r.Classes()
	var why string
	switch {
	case built == "":
		why = fmt.Sprintf("Portico served this Service (its finalizer %s is set), but no LoadBalancer record says through which class, and class %q is not served here", Finalizer, classes.Requested(svc))
	case !slices.Contains(classes.Enabled, built):
		why = fmt.Sprintf("its load balancer was built by %s, which this operator does not run (--providers)", built)
	case svc.Spec.LoadBalancerClass == nil && classes.Default == "":
		why = fmt.Sprintf("its load balancer was built by %s through --default-class, which is no longer set", built)
	case svc.Spec.LoadBalancerClass == nil:
		why = fmt.Sprintf("its load balancer was built by %s through --default-class, which is now %s", built, classes.Default)
	default:
		why = fmt.Sprintf("its load balancer was built by %s, which does not serve class %s", built, classes.Requested(svc))
	}
	return fmt.Sprintf("not served: %s. The load balancer and its address are kept and no longer updated. "+
		"To remove it, delete the Service, change its type, or annotate it %s=true; to serve it again, restore the operator's setting",
		why, model.AnnotationRelease)
}

// classFor returns the enabled class that should serve svc, or "": the
// one rule of package model over this operator's class settings.
func (r *ServiceReconciler) classFor(svc *corev1.Service) string {
	return r.Classes().For(svc)
}

// Classes is the operator's class setting.
func (r *ServiceReconciler) Classes() model.Classes {
	return model.Classes{Enabled: sortedClasses(r.Providers), Default: r.DefaultClass}
}

func (r *ServiceReconciler) ensure(ctx context.Context, svc *corev1.Service, class string, record *lbv1.LoadBalancer) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(svc)
	desired, hash, err := r.desired(ctx, svc, class)
	if err != nil {
		var ce *providers.ConfigError
		if errors.As(err, &ce) {
			return r.fail(ctx, svc, record, class, err)
		}
		return ctrl.Result{}, err
	}
	provider := r.Providers[class]
	if desired.TargetPods {
		if pt, ok := provider.(providers.PodTargeter); !ok || !pt.TargetsPods() {
			return r.fail(ctx, svc, record, class, providers.Configf(ReasonPodTargets,
				"allocateLoadBalancerNodePorts is false, but the %s backend can only send traffic to node ports; set it to true", class))
		}
	}

	// For the local class the record names the class before any backend
	// is asked for an address: the parts beside the operator (forwarder,
	// allocator rebuild, IPPool status) learn which Services are of a class
	// from it alone. Any other class's record follows in the record pass.
	if recordFirst(class) {
		if record, err = r.ensureRecord(ctx, svc, record, class); err != nil {
			return ctrl.Result{}, err
		}
	}
	serving, eps := servingCondition(svc.Generation, svc, desired.Endpoints)
	r.emitServingEvent(svc, serving)
	if r.upToDate(key, hash) {
		// Applied within the resync period by this process; the cache may
		// not show our own writes yet, so trust memory. A deleted record
		// clears this (see SetupWithManager). The record's status may still
		// be due from that Ensure (the record pass). Endpoints may still
		// have changed: say whether anything can carry traffic. The cached
		// copy may predate our own writes, so only the Serving condition is
		// patched (merged by type), never the address or Ready.
		wait, err := r.writeDueRecord(ctx, svc, record, hash, eps)
		if err != nil {
			return ctrl.Result{}, err
		}
		if !r.wroteServing(key, serving, false) {
			if err := r.writeServiceStatus(ctx, svc, svc.Status.LoadBalancer.Ingress, serving); err != nil {
				return ctrl.Result{}, err
			}
			r.wroteServing(key, serving, true)
		}
		if wait > 0 {
			// The record pass waits for other Services' addresses; the
			// endpoints go with it.
			return ctrl.Result{RequeueAfter: wait, Priority: ptr.To(recordPassPriority)}, nil
		}
		if err := r.writeEndpoints(ctx, record, eps); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: r.jitter(r.ResyncPeriod)}, nil
	}
	changed := record == nil || record.Status.AppliedHash != hash
	ctrl.LoggerFrom(ctx).V(2).Info("Ensuring load balancer", "class", class, "nodes", len(desired.Nodes), "ports", len(desired.Ports))
	var st *providers.Status
	r.addressing.during(key, func() { st, err = r.ensureWithProgress(ctx, provider, svc, desired, changed) })
	if err != nil {
		return r.fail(ctx, svc, record, class, err)
	}

	hadAddress := len(svc.Status.LoadBalancer.Ingress) > 0
	ready := readyCondition(svc.Generation, st)
	r.routingEvent(svc, st, ready)
	r.degradedEvent(svc, st)
	if err := r.writeServiceStatus(ctx, svc, ingressOf(st), ready, serving); err != nil {
		return ctrl.Result{}, err
	}
	if !hadAddress && len(st.Ingress) > 0 {
		r.Metrics.TimeToAddress.Observe(time.Since(svc.CreationTimestamp.Time).Seconds())
	}
	// The address is out. The record's status and the Ensured Event follow
	// in the record pass (recordpass.go), after every Service still waiting
	// for its address: they guard nothing (the record already names the
	// class, the Service holds the address), and when thousands of
	// Services wait, as at start or in a burst, their addresses come first.
	r.remember(key, hash, &dueRecord{status: st, class: class, changed: changed, at: time.Now()}, &serving)
	if hadAddress {
		// An update (a node change updates every load balancer at once):
		// unless Services wait for addresses, the pass runs here, not in
		// a second reconcile that would hold the backend's status until
		// then.
		wait, err := r.writeDueRecord(ctx, svc, record, hash, eps)
		if err != nil {
			return ctrl.Result{}, err
		}
		if wait > 0 {
			return ctrl.Result{RequeueAfter: wait, Priority: ptr.To(recordPassPriority)}, nil
		}
		return ctrl.Result{RequeueAfter: r.jitter(r.ResyncPeriod)}, nil
	}
	return ctrl.Result{RequeueAfter: recordPassDelay, Priority: ptr.To(recordPassPriority)}, nil
}

// ensuringEventAfter is how long a changed load balancer's Ensure may take
// before the Service gets an Ensuring Event: a slow cloud shows progress, a
// fast backend costs one Event (Ensured) per change, not two.
const ensuringEventAfter = time.Second

// ensureWithProgress calls the backend; when changed and the call outlasts
// ensuringEventAfter, it tells the user that the load balancer is being
// built.
func (r *ServiceReconciler) ensureWithProgress(ctx context.Context, p providers.Provider, svc *corev1.Service, d *providers.LoadBalancer, changed bool) (*providers.Status, error) {
	if changed {
		// What the Event needs of svc is taken now (svc changes under the
		// reconcile while the timer waits), not a copy of the whole
		// Service: a fast backend, the common case, sends no such Event.
		ref := eventRefOf(svc)
		slow := time.AfterFunc(ensuringEventAfter, func() {
			r.event(ref.object(), corev1.EventTypeNormal, ReasonEnsuring, "Ensure", "Ensuring %s load balancer", d.Class)
		})
		defer slow.Stop()
	}
	return p.Ensure(ctx, d)
}

// desired gathers the inputs of Desired from the cache.
// desired computes svc's desired load balancer and its fingerprint (see
// hashDesired).
func (r *ServiceReconciler) desired(ctx context.Context, svc *corev1.Service, class string) (*providers.LoadBalancer, string, error) {
	nodes, err := r.nodes.get(ctx, r.Client)
	if err != nil {
		return nil, "", err
	}
	slices, err := kubeindex.EndpointSlicesOf(ctx, r.Client, client.ObjectKeyFromObject(svc))
	if err != nil {
		return nil, "", fmt.Errorf("listing endpointslices: %w", err)
	}
	// Only the labels are read, in place: the cached Namespace is not
	// copied (a kilobyte per reconcile). Desired and the backends treat
	// their input as read-only, and the informer replaces a cached object,
	// never changes it.
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, client.ObjectKey{Name: svc.Namespace}, &ns, client.UnsafeDisableDeepCopy); err != nil && !apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("reading namespace: %w", err)
	}
	lhc, _ := r.Providers[class].(providers.LocalHealthChecker)
	allForLocal := lhc != nil && lhc.HealthChecksLocal()
	d, err := Desired(DesiredInput{
		ClusterID:        r.ClusterID,
		Class:            class,
		Service:          svc,
		EligibleNodes:    nodes.nodes,
		Slices:           slices,
		NamespaceLabels:  ns.Labels,
		AllNodesForLocal: allForLocal,
	})
	if err != nil {
		return nil, "", err
	}
	if (d.TrafficPolicy == providers.TrafficPolicyLocal && !allForLocal) || nodes.nodes == nil {
		return d, hashDesired(d, ""), nil
	}
	return d, hashDesired(d, nodes.hash), nil
}

// cleanup removes the load balancer of a Service that left Portico (deleted,
// type changed, class no longer ours) and then the finalizer.
func (r *ServiceReconciler) cleanup(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer, built string) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(svc, Finalizer) {
		return ctrl.Result{}, nil
	}
	if res, err := r.cleanupBackend(ctx, svc, record, built); err != nil || !res.IsZero() {
		return res, err
	}
	if svc.DeletionTimestamp.IsZero() {
		if err := r.clearServiceStatus(ctx, svc); err != nil {
			return ctrl.Result{}, err
		}
	}
	orig := svc.DeepCopy()
	controllerutil.RemoveFinalizer(svc, Finalizer)
	setBuiltClass(svc, "")
	if err := r.Client.Patch(ctx, svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.forget(client.ObjectKeyFromObject(svc))
	return ctrl.Result{}, nil
}

// cleanupBackend deletes the backend's load balancer and Portico's record.
func (r *ServiceReconciler) cleanupBackend(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer, built string) (ctrl.Result, error) {
	classes := []string{built}
	if built == "" {
		// No record of what built it (it was deleted by hand, or never
		// written): every enabled backend deletes only what carries its
		// ownership marks for this Service, so asking each is safe. But if
		// the class the Service asks for does not run here, its backend
		// may hold the load balancer: keep the finalizer rather than
		// orphan it.
		classes = sortedClasses(r.Providers)
		if want := r.Classes().Requested(svc); want != "" && r.Providers[want] == nil {
			classes = []string{want}
		}
	}
	key := providers.Key{ClusterID: r.ClusterID, Namespace: svc.Namespace, Name: svc.Name, UID: string(svc.UID)}
	for _, class := range classes {
		p, ok := r.Providers[class]
		if !ok {
			cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonProviderDisabled,
				ObservedGeneration: svc.Generation,
				Message: fmt.Sprintf("the load balancer was built by %s, which this operator does not run; enable it to delete the load balancer, "+
					"or remove the finalizer %s by hand to abandon it", class, Finalizer)}
			r.event(svc, corev1.EventTypeWarning, ReasonProviderDisabled, "Delete", "%s", cond.Message)
			if svc.DeletionTimestamp.IsZero() {
				if err := r.writeServiceStatus(ctx, svc, svc.Status.LoadBalancer.Ingress, cond); err != nil {
					return ctrl.Result{}, err
				}
			}
			return ctrl.Result{RequeueAfter: r.ConfigErrorBackoff}, nil
		}
		ctrl.LoggerFrom(ctx).V(2).Info("Deleting load balancer", "class", class)
		if err := p.Delete(ctx, key); err != nil {
			r.event(svc, corev1.EventTypeWarning, ReasonSyncFailed, "Delete", "deleting %s load balancer: %v", class, err)
			return ctrl.Result{RequeueAfter: r.retryAfter(client.ObjectKeyFromObject(svc), err)}, nil
		}
	}
	if record != nil {
		if err := r.Client.Delete(ctx, record); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting LoadBalancer record: %w", err)
		}
	}
	if built != "" || record != nil || len(svc.Status.LoadBalancer.Ingress) > 0 {
		r.event(svc, corev1.EventTypeNormal, ReasonDeleted, "Delete", "Deleted load balancer")
	}
	if r.CostMetrics != nil {
		r.CostMetrics.Delete(svc.Namespace, svc.Name)
	}
	r.forgetApplied(client.ObjectKeyFromObject(svc))
	return ctrl.Result{}, nil
}

// ensureFinalizer adds the finalizer and names class beside it
// (model.AnnotationBuiltClass), in one patch.
func (r *ServiceReconciler) ensureFinalizer(ctx context.Context, svc *corev1.Service, class string) error {
	if controllerutil.ContainsFinalizer(svc, Finalizer) && svc.Annotations[model.AnnotationBuiltClass] == class {
		return nil
	}
	orig := svc.DeepCopy()
	controllerutil.AddFinalizer(svc, Finalizer)
	setBuiltClass(svc, class)
	if err := r.Client.Patch(ctx, svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// setBuiltClass names class in svc's annotations ("" removes the name).
func setBuiltClass(svc *corev1.Service, class string) {
	if class == "" {
		delete(svc.Annotations, model.AnnotationBuiltClass)
		return
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[model.AnnotationBuiltClass] = class
}

// hashDesired fingerprints what a provider acts on. Endpoints count only for
// pod-targeting load balancers; for node-port targets their churn must not
// reach the backend.
//
// nodesHash, when not empty, is the fingerprint of d.Nodes, the shared
// nodeSet: the nodes are then not serialized again for every Service.
func hashDesired(d *providers.LoadBalancer, nodesHash string) string {
	c := *d
	if !c.TargetPods {
		c.Endpoints = nil
	}
	if nodesHash != "" {
		c.Nodes = nil
	}
	// Encoded into a reused buffer: json.Marshal's result, and appending
	// nodesHash to it, were two fresh copies per reconcile.
	buf := hashBuffers.Get().(*bytes.Buffer)
	defer func() {
		// A pod-targeting load balancer with thousands of endpoints
		// needs a large buffer once; the pool does not keep it.
		if buf.Cap() <= 64<<10 {
			hashBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(c); err != nil {
		return ""
	}
	// Encode ends the value with a newline that json.Marshal, which made
	// the fingerprints records hold, did not.
	buf.Truncate(buf.Len() - 1)
	buf.WriteString(nodesHash)
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:12])
}

var hashBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// eventRef is what an Event's reference takes from its Service (client-go's
// reference.GetReference; the kind comes from the scheme).
type eventRef struct {
	namespace, name, resourceVersion string
	uid                              types.UID
}

func eventRefOf(svc *corev1.Service) eventRef {
	return eventRef{namespace: svc.Namespace, name: svc.Name, resourceVersion: svc.ResourceVersion, uid: svc.UID}
}

// object is a Service that an Event can be about.
func (e eventRef) object() *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: e.name,
		ResourceVersion: e.resourceVersion, UID: e.uid}}
}

func (r *ServiceReconciler) event(obj *corev1.Service, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, eventType, reason, action, note, args...)
	}
}

func sortedClasses(m map[string]providers.Provider) []string {
	out := make([]string, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
