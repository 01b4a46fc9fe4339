// Package eventrec records Kubernetes Events (events.k8s.io/v1) for
// Portico's processes with memory and goroutines bounded however many
// objects they concern.
//
// client-go's events broadcaster (what controller-runtime's
// GetEventRecorder returns) keeps a copy of every Event it sent for six to
// twelve minutes, with no bound, to count repeats as a series, and starts a
// goroutine per Event: an operator that emits an Event for each of 10,000
// Services holds 10,000 Events (about 11 MB) and, while the API is slow,
// 10,000 goroutines. This recorder keeps what the same series counting
// needs and no more: a least-recently-used set of at most CacheSize series
// (the key, the Event's name, the count), dropped once not seen for
// SeriesWindow, and a queue of at most QueueSize Events served by Workers
// goroutines; an Event that finds the queue full is dropped, counted and
// logged, as client-go's broadcaster drops Events when its channel is full.
//
// The Events are those client-go makes (same name, reporting controller and
// instance, regarding reference, event time, series), with two differences
// a user can see: repeats are counted per note (client-go counts an Event
// with another note as a repeat of the first and shows the first note), and
// a note longer than the API's 1 kB is cut instead of rejected.
package eventrec

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

const (
	// NoteLimit is the longest note the API accepts (events.k8s.io/v1
	// validation: "can have at most 1024 characters").
	NoteLimit = 1024
	// nameLimit is the longest object name the API accepts.
	nameLimit = 253

	defaultCacheSize = 4096
	defaultQueueSize = 4096
	// defaultWorkers writes as many Events at once as 32 reconcilers
	// make writes (the record pass writes a status and records an
	// Event); the operator sets Workers to its own --workers.
	defaultWorkers = 32
	// defaultSeriesWindow is client-go's: an Event repeated within six
	// minutes of its last occurrence is a series.
	defaultSeriesWindow = 6 * time.Minute
	// maxTries and retryAfter are client-go's: an Event the API did not
	// answer is tried twelve times, about ten seconds apart.
	maxTries   = 12
	retryAfter = 10 * time.Second
)

// Options configure a Recorder. Zero values take the defaults.
type Options struct {
	// Controller is the reporting controller (portico-operator).
	Controller string
	// Instance is the reporting instance; default Controller-hostname.
	Instance string
	// CacheSize is how many series the recorder remembers (default 4096,
	// client-go's event correlator's size).
	CacheSize int
	// QueueSize is how many Events may wait for the API (default 4096;
	// client-go's broadcaster's queue holds 1,000 but hands each Event to
	// a goroutine of its own at once).
	QueueSize int
	// Workers write Events to the API (default 32): as many as the
	// reconcilers that record them, so that a burst of record passes
	// loses no Event.
	Workers int
	// SeriesWindow is how long after its last occurrence an Event is
	// counted as a repeat (default six minutes).
	SeriesWindow time.Duration
	// RetryAfter is the pause between tries (default ten seconds).
	RetryAfter time.Duration
	// Log receives every Event at V(1) and the recorder's failures.
	Log logr.Logger
	// Clock tells the time of Events and series (for tests).
	Clock clock.Clock
}

// Recorder records Events; it implements client-go's events.EventRecorder
// and, added to a manager, writes them while the manager runs (Events
// recorded before it starts wait in the queue).
type Recorder struct {
	api    eventsclient.EventsV1Interface
	scheme *runtime.Scheme
	o      Options

	mu sync.Mutex
	// series finds a series by its key's hash: the entry holds the key,
	// the map only its hash (a hash shared by two keys keeps the later).
	series map[uint64]*list.Element // of *entry
	order  list.List                // most recently seen first
	seed   maphash.Seed

	queue    chan *entry
	dropped  atomic.Uint64
	lastDrop atomic.Int64 // unix seconds of the last logged drop
}

// seriesKey identifies Events that count as one series: the regarding and
// related objects by identity (not by resourceVersion, which every write
// changes), and what happened.
type seriesKey struct {
	eventType, reason, action, note string
	regarding, related              objectKey
}

type objectKey struct {
	apiVersion, kind, namespace, name, fieldPath string
	uid                                          types.UID
}

// entry is one series: what the API needs to create or extend its Event.
type entry struct {
	key seriesKey
	// regardingVersion is the resourceVersion of the regarding object when
	// the series began, the rest of its reference is in key.
	regardingVersion string
	related          *corev1.ObjectReference
	first            time.Time

	// Guarded by Recorder.mu.
	name    string
	count   int32
	written int32 // the count the API has; 0: no Event yet
	queued  bool  // in the queue or being written
	last    time.Time
}

// New returns a Recorder writing through api; scheme resolves the kinds of
// the objects Events regard.
func New(api eventsclient.EventsV1Interface, scheme *runtime.Scheme, o Options) *Recorder {
	if o.Instance == "" {
		host, _ := os.Hostname()
		o.Instance = o.Controller + "-" + host
	}
	if o.CacheSize <= 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.QueueSize <= 0 {
		o.QueueSize = defaultQueueSize
	}
	if o.Workers <= 0 {
		o.Workers = defaultWorkers
	}
	if o.SeriesWindow <= 0 {
		o.SeriesWindow = defaultSeriesWindow
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = retryAfter
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Recorder{
		api: api, scheme: scheme, o: o,
		series: map[uint64]*list.Element{},
		seed:   maphash.MakeSeed(),
		queue:  make(chan *entry, o.QueueSize),
	}
}

// DroppedTotal counts, per reporting controller, the Events that found the
// queue full (portico_events_dropped_total). ForManager registers it.
var DroppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "portico_events_dropped_total",
	Help: "Events not recorded because the Kubernetes API did not take them as fast as they came.",
}, []string{"controller"})

var registerDropped = sync.OnceFunc(func() { metrics.Registry.MustRegister(DroppedTotal) })

// Dropped is how many Events found this recorder's queue full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Len is how many series the recorder remembers.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}

// Eventf records an Event about regarding (and related, which may be nil);
// it never blocks.
func (r *Recorder) Eventf(regarding, related runtime.Object, eventType, reason, action, note string, args ...any) {
	if len(args) > 0 {
		note = fmt.Sprintf(note, args...)
	}
	note = cut(note, NoteLimit)
	if eventType != corev1.EventTypeNormal && eventType != corev1.EventTypeWarning {
		r.o.Log.Error(nil, "Not recording an Event of an unsupported type", "type", eventType, "reason", reason, "note", note)
		return
	}
	reg, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		r.o.Log.Error(err, "Not recording an Event about an object without a reference", "reason", reason, "note", note)
		return
	}
	var rel *corev1.ObjectReference
	if related != nil {
		if rel, err = reference.GetReference(r.scheme, related); err != nil {
			r.o.Log.V(4).Info("Recording an Event without its related object", "error", err.Error())
		}
	}
	r.o.Log.V(1).Info(note, "type", eventType, "object", reg, "reason", reason)
	key := seriesKey{eventType: eventType, reason: reason, action: action, note: note, regarding: keyOf(reg)}
	if rel != nil {
		key.related = keyOf(rel)
	}
	now := r.o.Clock.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	h := maphash.Comparable(r.seed, key)
	var e *entry
	if el, ok := r.series[h]; ok && el.Value.(*entry).key == key {
		e = el.Value.(*entry)
		r.order.MoveToFront(el)
	} else {
		if ok {
			r.forgetLocked(el)
		}
		e = &entry{key: key, regardingVersion: reg.ResourceVersion, related: rel, first: now, name: eventName(reg.Name, now)}
		r.series[h] = r.order.PushFront(e)
		if r.order.Len() > r.o.CacheSize {
			r.forgetLocked(r.order.Back())
		}
	}
	e.count++
	e.last = now
	if e.queued {
		return // the write on its way takes the new count along
	}
	select {
	case r.queue <- e:
		e.queued = true
	default:
		e.count--
		if e.count == 0 {
			r.forgetLocked(r.series[h])
		}
		r.droppedOne(reason)
	}
}

// expireLocked forgets the series not seen for SeriesWindow (the oldest
// are at the back).
func (r *Recorder) expireLocked(now time.Time) {
	for el := r.order.Back(); el != nil; el = r.order.Back() {
		if now.Sub(el.Value.(*entry).last) <= r.o.SeriesWindow {
			return
		}
		r.forgetLocked(el)
	}
}

func (r *Recorder) forgetLocked(el *list.Element) {
	delete(r.series, maphash.Comparable(r.seed, el.Value.(*entry).key))
	r.order.Remove(el)
}

func (r *Recorder) droppedOne(reason string) {
	n := r.dropped.Add(1)
	DroppedTotal.WithLabelValues(r.o.Controller).Inc()
	now := time.Now().Unix()
	if last := r.lastDrop.Load(); now-last >= 60 && r.lastDrop.CompareAndSwap(last, now) {
		r.o.Log.Error(nil, "Dropping Events: the Kubernetes API does not take them as fast as they come", "reason", reason, "droppedTotal", n)
	}
}

// NeedLeaderElection: every replica records its own Events.
func (r *Recorder) NeedLeaderElection() bool { return false }

// Start writes queued Events until ctx ends.
func (r *Recorder) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.o.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-r.queue:
					r.write(ctx, e)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// write brings e's Event in the API up to e's count: it creates the Event,
// then patches its series while repeats arrived meanwhile.
func (r *Recorder) write(ctx context.Context, e *entry) {
	for {
		r.mu.Lock()
		count, last, written, name := e.count, e.last, e.written, e.name
		if count == written {
			e.queued = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		ok := r.try(ctx, func() error {
			var err error
			if written > 0 {
				if err = r.patchSeries(ctx, e, name, count, last); apierrors.IsNotFound(err) {
					// Expired (Events live an hour) or deleted: the
					// series goes on in a new Event.
					name = eventName(e.key.regarding.name, r.o.Clock.Now())
					written = 0
				}
			}
			if written == 0 {
				err = r.create(ctx, e, name, count, last)
			}
			return err
		})
		r.mu.Lock()
		if !ok {
			e.queued = false
			r.mu.Unlock()
			return
		}
		e.name, e.written = name, count
		r.mu.Unlock()
	}
}

// try calls call until it succeeds, fails for good, or maxTries ran out.
func (r *Recorder) try(ctx context.Context, call func() error) bool {
	for tries := 1; ; tries++ {
		err := call()
		if err == nil {
			return true
		}
		if !retriable(err) {
			r.o.Log.Error(err, "The Kubernetes API refused an Event; not retrying")
			return false
		}
		if tries == maxTries {
			r.o.Log.Error(err, "Giving up writing an Event", "tries", tries)
			return false
		}
		jitter := time.Duration(rand.Int64N(int64(r.o.RetryAfter) / 4))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(r.o.RetryAfter + jitter):
		}
	}
}

// retriable: the API did not answer, or answered that it could not now.
// An Event the API judged invalid or forbidden is the same next time.
func retriable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // transport error
	}
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsForbidden(err),
		apierrors.IsUnauthorized(err), apierrors.IsAlreadyExists(err), apierrors.IsNotFound(err),
		apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err),
		apierrors.IsRequestEntityTooLargeError(err):
		return false
	}
	return true
}

func (r *Recorder) create(ctx context.Context, e *entry, name string, count int32, last time.Time) error {
	reg := e.key.regarding.reference(e.regardingVersion)
	ns := eventNamespace(reg)
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: name, Namespace: ns},
		EventTime:           metav1.NewMicroTime(e.first),
		ReportingController: r.o.Controller,
		ReportingInstance:   r.o.Instance,
		Action:              e.key.action,
		Reason:              e.key.reason,
		Regarding:           reg,
		Related:             e.related,
		Note:                e.key.note,
		Type:                e.key.eventType,
	}
	if count > 1 {
		ev.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(last)}
	}
	_, err := r.api.Events(ns).Create(ctx, ev, metav1.CreateOptions{})
	return err
}

func (r *Recorder) patchSeries(ctx context.Context, e *entry, name string, count int32, last time.Time) error {
	ns := eventNamespace(e.key.regarding.reference(""))
	patch := fmt.Appendf(nil, `{"series":{"count":%d,"lastObservedTime":%q}}`, count,
		metav1.NewMicroTime(last).UTC().Format(metav1.RFC3339Micro))
	_, err := r.api.Events(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// eventName is client-go's: the regarding object's name and the time in
// hexadecimal nanoseconds, with the name cut so that the whole is a valid
// object name.
func eventName(object string, at time.Time) string {
	suffix := fmt.Sprintf(".%x", at.UnixNano())
	if len(object)+len(suffix) <= nameLimit {
		return object + suffix
	}
	// A subdomain's labels end in a letter or digit.
	return strings.TrimRight(object[:nameLimit-len(suffix)], ".-") + suffix
}

// eventNamespace is the regarding object's namespace or, for a
// cluster-scoped object, default (where client-go puts its Events).
func eventNamespace(regarding corev1.ObjectReference) string {
	if regarding.Namespace == "" {
		return metav1.NamespaceDefault
	}
	return regarding.Namespace
}

func (k objectKey) reference(resourceVersion string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: k.apiVersion, Kind: k.kind, Namespace: k.namespace, Name: k.name,
		UID: k.uid, FieldPath: k.fieldPath, ResourceVersion: resourceVersion}
}

func keyOf(ref *corev1.ObjectReference) objectKey {
	return objectKey{apiVersion: ref.APIVersion, kind: ref.Kind, namespace: ref.Namespace, name: ref.Name,
		fieldPath: ref.FieldPath, uid: ref.UID}
}

// cut shortens s to at most n bytes without splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ForManager returns a Recorder for controller that writes through mgr's
// connection while mgr runs, with workers writers (0: the default).
func ForManager(mgr manager.Manager, controller string, workers int) (*Recorder, error) {
	api, err := eventsclient.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return nil, fmt.Errorf("building the Events client: %w", err)
	}
	registerDropped()
	r := New(api, mgr.GetScheme(), Options{Controller: controller, Workers: workers, Log: mgr.GetLogger().WithName("events")})
	if err := mgr.Add(r); err != nil {
		return nil, err
	}
	return r, nil
}
