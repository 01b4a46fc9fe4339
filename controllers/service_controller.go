// Package controllers holds the Service controller, which drives a backend
// per loadBalancerClass. Backends with controllers of their own (the local
// backend's IPPool status) register them through
// providers.ControllerSetup.
package controllers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

// Finalizer keeps a Service until its load balancer is confirmed deleted.
const Finalizer = "lb.portico.dev/cleanup"

// Pricer prices a provider's cost inputs; nil disables cost reporting.
type Pricer interface {
	Price(class string, in providers.CostInputs) (*lbv1.CostStatus, error)
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
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=portico-system,resources=configmaps,verbs=get
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=portico-system,resources=leases,verbs=get;list;watch;create;update;patch

// ServiceReconciler reconciles LoadBalancer Services of Portico's classes.
type ServiceReconciler struct {
	Client      client.Client
	Recorder    events.EventRecorder
	Metrics     *Metrics
	Pricer      Pricer
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

	pending chan event.GenericEvent
	slots   fairShare

	mu      sync.Mutex
	applied map[types.NamespacedName]applied
	// reensure holds Services whose next reconcile must call the backend
	// even if an Ensure in flight remembers them as applied (Reensure).
	reensure map[types.NamespacedName]bool
	failures map[types.NamespacedName]int
}

type applied struct {
	hash string
	at   time.Time
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
	log := ctrl.LoggerFrom(ctx).WithValues("Service", klog.KObj(svc))
	ctx = ctrl.LoggerInto(ctx, log)

	record, err := r.getRecord(ctx, svc)
	if err != nil {
		return ctrl.Result{}, err
	}
	class := r.classFor(svc)
	built := ""
	if record != nil {
		built = record.Spec.Class
	}

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
	if err := r.ensureFinalizer(ctx, svc); err != nil {
		return ctrl.Result{}, err
	}
	return r.ensure(ctx, svc, class, record)
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
	desired, err := r.desired(ctx, svc, class)
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

	// The record names the class before any backend is asked for an
	// address: the parts beside the operator (forwarder, allocator rebuild,
	// IPPool status) learn which Services are of a class from it alone.
	if record, err = r.ensureRecord(ctx, svc, record, class); err != nil {
		return ctrl.Result{}, err
	}
	hash := hashDesired(desired)
	if r.upToDate(key, hash) {
		// Applied within the resync period by this process; the cache may
		// not show our own writes yet, so trust memory. A deleted record
		// clears this (see SetupWithManager).
		return ctrl.Result{RequeueAfter: r.jitter(r.ResyncPeriod)}, nil
	}
	changed := record == nil || record.Status.AppliedHash != hash
	if changed {
		r.event(svc, corev1.EventTypeNormal, ReasonEnsuring, "Ensure", "Ensuring %s load balancer", class)
	}
	ctrl.LoggerFrom(ctx).V(2).Info("Ensuring load balancer", "class", class, "nodes", len(desired.Nodes), "ports", len(desired.Ports))
	st, err := provider.Ensure(ctx, desired)
	if err != nil {
		return r.fail(ctx, svc, record, class, err)
	}

	hadAddress := len(svc.Status.LoadBalancer.Ingress) > 0
	if err := r.writeServiceStatus(ctx, svc, ingressOf(st), readyCondition(svc.Generation, st)); err != nil {
		return ctrl.Result{}, err
	}
	if !hadAddress && len(st.Ingress) > 0 {
		r.Metrics.TimeToAddress.Observe(time.Since(svc.CreationTimestamp.Time).Seconds())
	}
	if err := r.writeRecord(ctx, svc, record, class, st, hash, nil); err != nil {
		return ctrl.Result{}, err
	}
	if changed {
		r.event(svc, corev1.EventTypeNormal, ReasonEnsured, "Ensure", "Ensured %s load balancer at %s", class, addressList(st))
	}
	r.remember(key, hash)
	return ctrl.Result{RequeueAfter: r.jitter(r.ResyncPeriod)}, nil
}

// desired gathers the inputs of Desired from the cache.
func (r *ServiceReconciler) desired(ctx context.Context, svc *corev1.Service, class string) (*providers.LoadBalancer, error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return nil, fmt.Errorf("listing endpointslices: %w", err)
	}
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, client.ObjectKey{Name: svc.Namespace}, &ns); err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading namespace: %w", err)
	}
	return Desired(DesiredInput{
		ClusterID:       r.ClusterID,
		Class:           class,
		Service:         svc,
		Nodes:           nodes.Items,
		Slices:          slices.Items,
		NamespaceLabels: ns.Labels,
	})
}

// fail reports err on the Service and the record and decides the retry.
func (r *ServiceReconciler) fail(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer, class string, err error) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(svc)
	r.forgetApplied(key)
	cond := failedCondition(svc.Generation, class, err)
	prev := meta.FindStatusCondition(svc.Status.Conditions, ConditionReady)
	if prev == nil || prev.Reason != cond.Reason || prev.Message != cond.Message {
		r.event(svc, corev1.EventTypeWarning, eventReason(cond.Reason), "Ensure", "%s", cond.Message)
	}
	// The status keeps the addresses the backend still serves, unless it
	// released them: nodes announce what the status lists.
	if ce := (*providers.ConfigError)(nil); errors.As(err, &ce) && ce.Released {
		if werr := r.dropAddresses(ctx, svc, record); werr != nil {
			return ctrl.Result{}, werr
		}
	}
	if werr := r.writeServiceStatus(ctx, svc, svc.Status.LoadBalancer.Ingress, cond); werr != nil {
		return ctrl.Result{}, werr
	}
	if werr := r.writeRecord(ctx, svc, record, class, nil, "", &cond); werr != nil {
		return ctrl.Result{}, werr
	}

	var ce *providers.ConfigError
	var no *providers.NotOwnedError
	if errors.As(err, &ce) || errors.As(err, &no) {
		ctrl.LoggerFrom(ctx).V(1).Info("Load balancer needs the user's attention", "reason", cond.Reason, "message", cond.Message)
		return ctrl.Result{RequeueAfter: r.ConfigErrorBackoff}, nil
	}
	after, retryable := providers.IsRetryable(err)
	if !retryable || after == 0 {
		after = r.backoff(key)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Provider call failed, will retry", "retryAfter", after, "err", err.Error())
	return ctrl.Result{RequeueAfter: after}, nil
}

// dropAddresses clears the addresses from the Service's and the record's
// status. It patches unconditionally: the cache may not show the write that
// added them yet, and a merge patch against a stale copy would be empty.
func (r *ServiceReconciler) dropAddresses(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer) error {
	if err := r.Client.Status().Patch(ctx, svc, client.RawPatch(types.MergePatchType, []byte(`{"status":{"loadBalancer":{"ingress":null}}}`))); err != nil {
		return fmt.Errorf("dropping released addresses from Service status: %w", err)
	}
	if record == nil {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, record, client.RawPatch(types.MergePatchType, []byte(`{"status":{"addresses":null,"address":null}}`))); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("dropping released addresses from LoadBalancer status: %w", err))
	}
	return nil
}

func eventReason(conditionReason string) string {
	switch conditionReason {
	case ReasonProviderRetrying, ReasonSyncFailed:
		return ReasonSyncFailed
	}
	return conditionReason
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
			after, retryable := providers.IsRetryable(err)
			if !retryable || after == 0 {
				after = r.backoff(client.ObjectKeyFromObject(svc))
			}
			return ctrl.Result{RequeueAfter: after}, nil
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

func (r *ServiceReconciler) ensureFinalizer(ctx context.Context, svc *corev1.Service) error {
	if controllerutil.ContainsFinalizer(svc, Finalizer) {
		return nil
	}
	orig := svc.DeepCopy()
	controllerutil.AddFinalizer(svc, Finalizer)
	if err := r.Client.Patch(ctx, svc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// writeServiceStatus sets ingress and the Ready condition, writing only when
// something changed.
func (r *ServiceReconciler) writeServiceStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, cond metav1.Condition) error {
	orig := svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = ingress
	meta.SetStatusCondition(&svc.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(orig.Status, svc.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, svc, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("writing Service status: %w", err)
	}
	return nil
}

func (r *ServiceReconciler) clearServiceStatus(ctx context.Context, svc *corev1.Service) error {
	orig := svc.DeepCopy()
	svc.Status.LoadBalancer = corev1.LoadBalancerStatus{}
	meta.RemoveStatusCondition(&svc.Status.Conditions, ConditionReady)
	if equality.Semantic.DeepEqual(orig.Status, svc.Status) {
		return nil
	}
	return client.IgnoreNotFound(r.Client.Status().Patch(ctx, svc, client.MergeFrom(orig)))
}

func (r *ServiceReconciler) getRecord(ctx context.Context, svc *corev1.Service) (*lbv1.LoadBalancer, error) {
	rec := &lbv1.LoadBalancer{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(svc), rec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading LoadBalancer record: %w", err)
	}
	if !metav1.IsControlledBy(rec, svc) {
		// A record of an earlier Service with the same name, awaiting
		// garbage collection: not ours to read.
		return nil, nil
	}
	return rec, nil
}

// writeRecord creates the LoadBalancer record if needed and updates its
// status from st (success) or failure (failed condition), writing only when
// something changed.
func (r *ServiceReconciler) writeRecord(ctx context.Context, svc *corev1.Service, rec *lbv1.LoadBalancer, class string, st *providers.Status, hash string, failure *metav1.Condition) error {
	rec, err := r.ensureRecord(ctx, svc, rec, class)
	if err != nil {
		return err
	}
	orig := rec.DeepCopy()
	s := &rec.Status
	s.Class = class
	if failure != nil {
		meta.SetStatusCondition(&s.Conditions, *failure)
		s.Ready = string(failure.Status)
	} else {
		fillRecordStatus(s, st)
		cond := readyCondition(svc.Generation, st)
		meta.SetStatusCondition(&s.Conditions, cond)
		s.Ready = string(cond.Status)
		s.AppliedHash = hash
		s.ObservedGeneration = svc.Generation
		r.price(ctx, svc, class, st, s)
		if !equality.Semantic.DeepEqual(orig.Status, rec.Status) || s.LastSyncTime == nil {
			s.LastSyncTime = ptr.To(metav1.Now())
		}
	}
	if equality.Semantic.DeepEqual(orig.Status, rec.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, rec, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("writing LoadBalancer status: %w", err)
	}
	return nil
}

// ensureRecord creates svc's LoadBalancer record, naming class, unless rec
// already is it.
func (r *ServiceReconciler) ensureRecord(ctx context.Context, svc *corev1.Service, rec *lbv1.LoadBalancer, class string) (*lbv1.LoadBalancer, error) {
	if rec != nil {
		return rec, nil
	}
	rec = &lbv1.LoadBalancer{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name},
		Spec:       lbv1.LoadBalancerSpec{Class: class},
	}
	if err := controllerutil.SetControllerReference(svc, rec, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, rec); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating LoadBalancer record: %w", err)
		}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(rec), rec); err != nil {
			return nil, fmt.Errorf("reading LoadBalancer record: %w", err)
		}
	}
	return rec, nil
}

func fillRecordStatus(s *lbv1.LoadBalancerStatus, st *providers.Status) {
	s.Addresses = nil
	for _, in := range st.Ingress {
		a := lbv1.LoadBalancerAddress{Hostname: in.Hostname, IPMode: string(in.IPMode), Node: in.Node}
		if in.IP.IsValid() {
			a.IP = in.IP.String()
		}
		s.Addresses = append(s.Addresses, a)
	}
	s.Address = ""
	if len(s.Addresses) > 0 {
		s.Address = s.Addresses[0].IP
		if s.Address == "" {
			s.Address = s.Addresses[0].Hostname
		}
	}
	s.Ports = nil
	for _, p := range st.Ports {
		s.Ports = append(s.Ports, lbv1.PortStatus{Port: p.Port, Protocol: string(p.Protocol), Error: p.Error})
	}
	s.Resources = nil
	for _, res := range st.Resources {
		s.Resources = append(s.Resources, lbv1.ProviderResource{Kind: res.Kind, ID: res.ID})
	}
	s.Backends = lbv1.BackendStatus{Total: int32(st.Backends.Total), Healthy: int32(st.Backends.Healthy)}
	if st.Backends.Healthy < 0 {
		s.BackendsSummary = fmt.Sprintf("?/%d", st.Backends.Total)
	} else {
		s.BackendsSummary = fmt.Sprintf("%d/%d", st.Backends.Healthy, st.Backends.Total)
	}
}

// price fills the cost fields; a pricing failure becomes a condition on the
// record, never a silent zero.
func (r *ServiceReconciler) price(ctx context.Context, svc *corev1.Service, class string, st *providers.Status, s *lbv1.LoadBalancerStatus) {
	if r.Pricer == nil {
		return
	}
	cost, err := r.Pricer.Price(class, st.Cost)
	if r.CostMetrics != nil {
		if merr := r.CostMetrics.Set(svc.Namespace, svc.Name, class, cost); merr != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("Exporting cost metric failed", "err", merr.Error())
		}
	}
	meta.SetStatusCondition(&s.Conditions, pricing.Condition(cost, err, svc.Generation))
	if err != nil {
		s.Cost, s.MonthlyCost = nil, ""
		ctrl.LoggerFrom(ctx).V(1).Info("Pricing failed", "err", err.Error())
		return
	}
	s.Cost = cost
	s.MonthlyCost = cost.Monthly + " " + cost.Currency
}

func ingressOf(st *providers.Status) []corev1.LoadBalancerIngress {
	var out []corev1.LoadBalancerIngress
	for _, in := range st.Ingress {
		ing := corev1.LoadBalancerIngress{Hostname: in.Hostname}
		if in.IP.IsValid() {
			ing.IP = in.IP.String()
			if in.IPMode != "" {
				ing.IPMode = ptr.To(corev1.LoadBalancerIPMode(in.IPMode))
			}
		}
		for _, p := range st.Ports {
			ps := corev1.PortStatus{Port: p.Port, Protocol: corev1.Protocol(p.Protocol)}
			if p.Error != "" {
				ps.Error = ptr.To(portErrorReason(p.Error))
			}
			ing.Ports = append(ing.Ports, ps)
		}
		out = append(out, ing)
	}
	return out
}

// portErrorReason turns a provider's port error into the CamelCase reason the
// Service API accepts.
func portErrorReason(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "lb.portico.dev/PortError"
		}
	}
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 316 {
		return "lb.portico.dev/PortError"
	}
	return s
}

func addressList(st *providers.Status) string {
	var out []string
	for _, in := range st.Ingress {
		if in.IP.IsValid() {
			out = append(out, in.IP.String())
		} else {
			out = append(out, in.Hostname)
		}
	}
	if len(out) == 0 {
		return "<none>"
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// hashDesired fingerprints what a provider acts on. Endpoints count only for
// pod-targeting load balancers; for node-port targets their churn must not
// reach the backend.
func hashDesired(d *providers.LoadBalancer) string {
	c := *d
	if !c.TargetPods {
		c.Endpoints = nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

func (r *ServiceReconciler) event(obj *corev1.Service, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, eventType, reason, action, note, args...)
	}
}

func (r *ServiceReconciler) upToDate(key types.NamespacedName, hash string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reensure[key] {
		delete(r.reensure, key)
		return false
	}
	a, ok := r.applied[key]
	return ok && a.hash == hash && time.Since(a.at) < r.ResyncPeriod
}

// markReensure makes the next upToDate of key false.
func (r *ServiceReconciler) markReensure(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reensure == nil {
		r.reensure = map[types.NamespacedName]bool{}
	}
	r.reensure[key] = true
}

func (r *ServiceReconciler) remember(key types.NamespacedName, hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[types.NamespacedName]applied{}
	}
	r.applied[key] = applied{hash: hash, at: time.Now()}
	delete(r.failures, key)
}

func (r *ServiceReconciler) forgetApplied(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.applied, key)
}

func (r *ServiceReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.applied, key)
	delete(r.failures, key)
}

// backoff returns the next exponential delay for key.
func (r *ServiceReconciler) backoff(key types.NamespacedName) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures == nil {
		r.failures = map[types.NamespacedName]int{}
	}
	n := r.failures[key]
	r.failures[key] = n + 1
	d := r.RetryBase << min(n, 20)
	if d > r.RetryMax || d <= 0 {
		d = r.RetryMax
	}
	return r.jitter(d)
}

// jitter spreads d by up to +10% so that resyncs and retries do not align.
func (r *ServiceReconciler) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

func sortedClasses(m map[string]providers.Provider) []string {
	out := make([]string, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
