// The record pass: after an Ensure, the record's status and the Ensured
// Event are written by a later reconcile of the Service, not by the one that
// put the address on the Service. They guard nothing (the record already
// names the class, the Service holds the address), so the apiserver's
// capacity goes first to the Services still waiting for an address, wherever
// they wait:
//   - in the queue: the pass is queued recordPassDelay after the Ensure at
//     recordPassPriority, below every other item (the initial list's
//     handler.LowPriority included);
//   - in time: a pass that comes due while another reconcile is on its way
//     to a Service's first address (finalizer, record, Service status; not
//     while its backend takes long), or less than RecordPassQuiet after the
//     last one, is parked, and queued again once address work has been
//     quiet that long, or after recordPassMaxWait at the latest. In a burst
//     the Services awaiting addresses are mostly in the workers or still
//     being created, not in the queue, and any event (an EndpointSlice of
//     the Service) can bring a pass forward, so the queue's order alone
//     does not keep the passes out of the burst.
//
// An update of a Service that has its address runs the pass in the same
// reconcile, right after the Ensure, when address work is not busy: with
// no Service waiting, a second reconcile would only hold the backend's
// status until it comes.

package controllers

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

const (
	// recordPassPriority queues the pass below every other item.
	recordPassPriority = handler.LowPriority - 100
	// recordPassDelay is how long after the Ensure the pass is queued: by
	// then the cache shows the Service's new status.
	recordPassDelay = 100 * time.Millisecond
	// DefaultRecordPassQuiet is how long no reconcile must have been on
	// its way to a first address before record passes go
	// (ServiceReconciler.RecordPassQuiet): in a burst, Services keep
	// arriving at much shorter intervals, and the apiserver's capacity
	// goes to their Creates and addresses first.
	DefaultRecordPassQuiet = time.Second
	// recordPassMaxWait bounds how long a pass waits for other Services'
	// addresses: under a stream of new Services that never lets up, a
	// record's status lags its Service's by at most this.
	recordPassMaxWait = 30 * time.Second
	// slowBackendAfter is how long a backend call may take before the
	// reconcile waiting on it stops holding back record passes: a cloud
	// that takes minutes to build a load balancer does not use the
	// apiserver meanwhile.
	slowBackendAfter = time.Second
)

// dueRecord is what an Ensure left for the record pass.
type dueRecord struct {
	status  *providers.Status
	class   string
	changed bool
	// at is when the Ensure left it.
	at time.Time
}

// writeDueRecord writes the record's status (and the Ensured Event) that the
// Ensure of hash left for the record pass, if any; it is kept for a retry
// when the write fails. A newer Ensure replaces it, a failure or a deleted
// record drops it (fail writes the record itself; a rebuilt record comes
// with a new Ensure). While other Services are on their way to their first
// address it writes nothing and returns how long the pass may still wait
// (the Service is parked and queued again when they are done).
func (r *ServiceReconciler) writeDueRecord(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer, hash string, eps lbv1.EndpointsStatus) (wait time.Duration, err error) {
	key := client.ObjectKeyFromObject(svc)
	due := r.due(key, hash)
	if due == nil {
		return 0, nil
	}
	if wait := recordPassMaxWait - time.Since(due.at); wait > 0 && r.addressing.park(key) {
		return wait, nil
	}
	if err := r.writeRecord(ctx, svc, record, due.class, due.status, hash, &eps, nil); err != nil {
		return 0, err
	}
	if due.changed {
		r.event(svc, corev1.EventTypeNormal, ReasonEnsured, "Ensure", "Ensured %s load balancer at %s", due.class, addressList(due.status))
	}
	r.recordWritten(key, due, &eps)
	return 0, nil
}

// addressWork knows which reconciles are on their way to a Service's first
// address, and which record passes wait for them. The zero value is ready to
// use; released is nil until the controller is set up, and then takes an
// event whenever the parked passes may go.
type addressWork struct {
	mu     sync.Mutex
	active map[types.NamespacedName]bool
	// lastEnd is when the last address work ended.
	lastEnd time.Time
	parked  map[types.NamespacedName]bool
	// releasing is set while a release is scheduled.
	releasing bool
	released  chan event.GenericEvent
	// quiet is the quiet period; zero means DefaultRecordPassQuiet.
	quiet time.Duration
}

func (a *addressWork) quietPeriod() time.Duration {
	if a.quiet > 0 {
		return a.quiet
	}
	return DefaultRecordPassQuiet
}

// set marks key's reconcile as address work (on) or not.
func (a *addressWork) set(key types.NamespacedName, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if on {
		if a.active == nil {
			a.active = map[types.NamespacedName]bool{}
		}
		a.active[key] = true
		return
	}
	if !a.active[key] {
		return
	}
	release(&a.active, key)
	a.lastEnd = time.Now()
	if len(a.active) == 0 {
		a.scheduleReleaseLocked(a.quietPeriod())
	}
}

// busyLocked reports whether a reconcile other than key's own is address
// work, or one ended less than the quiet period ago: Services are still
// arriving.
func (a *addressWork) busyLocked(key types.NamespacedName) bool {
	n := len(a.active)
	if a.active[key] {
		n--
	}
	return n > 0 || time.Since(a.lastEnd) < a.quietPeriod()
}

// park holds key's record pass while address work is busy, and reports
// whether it did. Checked and parked under one lock, so the release cannot
// pass unseen in between.
func (a *addressWork) park(key types.NamespacedName) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.busyLocked(key) {
		return false
	}
	if a.parked == nil {
		a.parked = map[types.NamespacedName]bool{}
	}
	a.parked[key] = true
	if len(a.active) == 0 {
		a.scheduleReleaseLocked(a.quietPeriod() - time.Since(a.lastEnd))
	}
	return true
}

// scheduleReleaseLocked releases the parked passes after d, if address work
// is still quiet then; new address work in between defers the release to
// its own end.
func (a *addressWork) scheduleReleaseLocked(d time.Duration) {
	if a.releasing || len(a.parked) == 0 || a.released == nil {
		return
	}
	a.releasing = true
	time.AfterFunc(d, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.releasing = false
		switch {
		case len(a.active) > 0:
			// The last of them schedules the next release.
		case time.Since(a.lastEnd) < a.quietPeriod():
			a.scheduleReleaseLocked(a.quietPeriod() - time.Since(a.lastEnd))
		default:
			// A full channel already holds a release, which takes
			// every parked key when it is handled.
			select {
			case a.released <- event.GenericEvent{Object: &corev1.Service{}}:
			default:
			}
		}
	})
}

// takeParked returns the parked keys and forgets them.
func (a *addressWork) takeParked() []reconcile.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]reconcile.Request, 0, len(a.parked))
	for key := range a.parked {
		out = append(out, reconcile.Request{NamespacedName: key})
	}
	a.parked = nil
	return out
}

// during runs call, the backend call of key's reconcile; when it outlasts
// slowBackendAfter, key stops counting as address work until call returns.
func (a *addressWork) during(key types.NamespacedName, call func()) {
	a.mu.Lock()
	on := a.active[key]
	a.mu.Unlock()
	if !on {
		call()
		return
	}
	paused := make(chan struct{})
	t := time.AfterFunc(slowBackendAfter, func() {
		a.set(key, false)
		close(paused)
	})
	call()
	if !t.Stop() {
		<-paused
		a.set(key, true)
	}
}

// releaseHandler queues released record passes, still below everything
// else in the queue.
func (a *addressWork) releaseHandler() handler.EventHandler {
	return handler.Funcs{
		GenericFunc: func(_ context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			reqs := a.takeParked()
			if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
				pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(recordPassPriority)}, reqs...)
				return
			}
			for _, req := range reqs {
				q.Add(req)
			}
		},
	}
}
