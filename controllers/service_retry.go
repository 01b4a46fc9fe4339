// How the Service controller retries: every backend error is mapped to a
// condition, an Event and a requeue delay here, in fail and retryAfter.

package controllers

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

type applied struct {
	hash string
	at   time.Time
	// endpoints is what this process last wrote to the record's
	// status.endpoints: the cached record may not show it yet.
	endpoints *lbv1.EndpointsStatus
	// record is the record status the Ensure of hash left for the
	// record pass; nil once written.
	record *dueRecord
	// serving is the Serving condition this process last wrote to the
	// Service: the cached Service may not show it yet.
	serving *metav1.Condition
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
	if werr := r.writeRecord(ctx, svc, record, class, nil, "", nil, &cond); werr != nil {
		return ctrl.Result{}, werr
	}

	after := r.retryAfter(key, err)
	ctrl.LoggerFrom(ctx).V(1).Info("Provider call failed, will retry", "reason", cond.Reason, "retryAfter", after, "err", err.Error())
	return ctrl.Result{RequeueAfter: after}, nil
}

// retryAfter is the one mapping from a backend error to a retry delay:
// problems the user must fix (ConfigError, NotOwnedError) wait for
// --config-error-backoff or a change to the Service; a RetryError waits as
// long as the backend suggests; everything else, and a RetryError without a
// suggestion, backs off exponentially per Service.
func (r *ServiceReconciler) retryAfter(key types.NamespacedName, err error) time.Duration {
	var ce *providers.ConfigError
	var no *providers.NotOwnedError
	if errors.As(err, &ce) || errors.As(err, &no) {
		return r.ConfigErrorBackoff
	}
	if after, retryable := providers.IsRetryable(err); retryable && after > 0 {
		return after
	}
	return r.backoff(key)
}

func eventReason(conditionReason string) string {
	switch conditionReason {
	case ReasonProviderRetrying, ReasonSyncFailed:
		return ReasonSyncFailed
	}
	return conditionReason
}

func (r *ServiceReconciler) upToDate(key types.NamespacedName, hash string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reensure[key] {
		release(&r.reensure, key)
		return false
	}
	a, ok := r.applied[key]
	return ok && a.hash == hash && time.Since(a.at) < r.ResyncPeriod
}

// wasApplied reports whether an Ensure of key's load balancer succeeded in
// this process (within the resync period or not).
func (r *ServiceReconciler) wasApplied(key types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.applied[key]
	return ok
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

// remember records that hash was applied to key's load balancer, that the
// record's status is due (the record pass) and that serving was written.
func (r *ServiceReconciler) remember(key types.NamespacedName, hash string, due *dueRecord, serving *metav1.Condition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.applied == nil {
		r.applied = map[types.NamespacedName]applied{}
	}
	r.applied[key] = applied{hash: hash, at: time.Now(), record: due, serving: serving}
	release(&r.failures, key)
}

// wroteServing reports whether this process last wrote c as key's Serving
// condition; with written set it records that it just did.
func (r *ServiceReconciler) wroteServing(key types.NamespacedName, c metav1.Condition, written bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.applied[key]
	if !ok {
		return false
	}
	if written {
		a.serving = &c
		r.applied[key] = a
		return true
	}
	return a.serving != nil && a.serving.Status == c.Status && a.serving.Reason == c.Reason &&
		a.serving.Message == c.Message && a.serving.ObservedGeneration == c.ObservedGeneration
}

// due returns the record status left for the record pass by the Ensure of
// hash, or nil.
func (r *ServiceReconciler) due(key types.NamespacedName, hash string) *dueRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.applied[key]; ok && a.hash == hash {
		return a.record
	}
	return nil
}

// recordWritten records that due, with endpoints eps, is written, unless
// something replaced or dropped it meanwhile.
func (r *ServiceReconciler) recordWritten(key types.NamespacedName, due *dueRecord, eps *lbv1.EndpointsStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.applied[key]; ok && a.record == due {
		a.record, a.endpoints = nil, eps
		r.applied[key] = a
	}
}

// wroteEndpoints reports whether this process last wrote eps to key's
// record; with written set it records that it just did.
func (r *ServiceReconciler) wroteEndpoints(key types.NamespacedName, eps *lbv1.EndpointsStatus, written bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.applied[key]
	if !ok {
		return false
	}
	if written {
		a.endpoints = eps
		r.applied[key] = a
		return true
	}
	return a.endpoints != nil && equality.Semantic.DeepEqual(a.endpoints, eps)
}

// forgetOwn drops what this process remembers writing to key's metadata and
// record (the record was deleted).
func (r *ServiceReconciler) forgetOwn(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	release(&r.own, key)
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
	release(&r.failures, key)
	release(&r.own, key)
}

// release deletes key from the map *m of things remembered for a while, and
// drops the map once it is empty: a Go map keeps its size after its entries
// are deleted, and these fill up with every Service at a start or a burst
// (the own writes of 10,000 new Services held 3.8 MB for the rest of the
// run).
func release[K comparable, V any](m *map[K]V, key K) {
	delete(*m, key)
	if len(*m) == 0 {
		*m = nil
	}
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
