package eventrec_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/portico-lb/portico/internal/eventrec"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/internal/testenv"
)

// api is the events.k8s.io API as the recorder sees it: it keeps what was
// asked of it (or only counts, for the memory test) and answers with the
// errors a test scripts.
type api struct {
	eventsclient.EventsV1Interface // nil: calling anything else panics
	keep                           bool

	mu      sync.Mutex
	creates []*eventsv1.Event
	patches []string // "name patch"
	calls   int
	fail    []error // answers of the next calls, in order
	// entered, when set, takes a value as each call comes in, before
	// block (when set) holds it until closed.
	entered chan struct{}
	block   chan struct{}
	latency time.Duration
}

func (a *api) Events(ns string) eventsclient.EventInterface { return &eventsAPI{api: a, ns: ns} }

func (a *api) answer() error {
	if a.entered != nil {
		a.entered <- struct{}{}
	}
	if a.block != nil {
		<-a.block
	}
	time.Sleep(a.latency)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if len(a.fail) > 0 {
		err := a.fail[0]
		a.fail = a.fail[1:]
		return err
	}
	return nil
}

func (a *api) written() (creates []*eventsv1.Event, patches []string, calls int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*eventsv1.Event(nil), a.creates...), append([]string(nil), a.patches...), a.calls
}

type eventsAPI struct {
	eventsclient.EventInterface
	api *api
	ns  string
}

func (e *eventsAPI) Create(_ context.Context, ev *eventsv1.Event, _ metav1.CreateOptions) (*eventsv1.Event, error) {
	if err := e.api.answer(); err != nil {
		return nil, err
	}
	if e.ns != ev.Namespace {
		return nil, fmt.Errorf("event of namespace %s created in %s", ev.Namespace, e.ns)
	}
	e.api.mu.Lock()
	defer e.api.mu.Unlock()
	if e.api.keep {
		e.api.creates = append(e.api.creates, ev.DeepCopy())
	}
	return nil, nil
}

func (e *eventsAPI) Patch(_ context.Context, name string, pt types.PatchType, data []byte, _ metav1.PatchOptions, _ ...string) (*eventsv1.Event, error) {
	if err := e.api.answer(); err != nil {
		return nil, err
	}
	if pt != types.MergePatchType {
		return nil, fmt.Errorf("patch type %s", pt)
	}
	e.api.mu.Lock()
	defer e.api.mu.Unlock()
	e.api.patches = append(e.api.patches, name+" "+string(data))
	return nil, nil
}

func service(i int) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: fmt.Sprintf("web-%d", i),
		UID: types.UID(fmt.Sprintf("uid-%d", i)), ResourceVersion: "7"}}
}

func start(t *testing.T, a *api, o eventrec.Options) *eventrec.Recorder {
	t.Helper()
	o.Controller = "portico-operator"
	o.Instance = "portico-operator-a"
	r := eventrec.New(a, scheme.New(), o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func waitCalls(t *testing.T, a *api, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, _, calls := a.written(); calls < n {
			return fmt.Errorf("%d API calls, want %d", calls, n)
		}
		return nil
	})
}

// TestMemoryDoesNotGrowWithEvents: an Event for each of 20,000 Services
// (bench-scale's node flap emits one per Service) leaves the recorder
// holding what its bounded series cache holds, not every Event. client-go's
// broadcaster, which controller-runtime's GetEventRecorder returns, kept a
// copy of each Event for six minutes or more: 11 MB in bench-scale's heap
// at the end of the flap, and this test fails with it (about 1.1 kB per
// Event, 22 MB).
func TestMemoryDoesNotGrowWithEvents(t *testing.T) {
	const n = 20000
	a := &api{}
	r := start(t, a, eventrec.Options{})
	before := testenv.LiveHeap()
	for i := range n {
		r.Eventf(service(i), nil, corev1.EventTypeNormal, "UpdatedLoadBalancer", "Update", "Updated load balancer with new hosts")
		if i%500 == 499 {
			waitCalls(t, a, i+1) // the queue drains; this test is not about dropping
		}
	}
	waitCalls(t, a, n)
	held := int64(testenv.LiveHeap()) - int64(before)
	runtime.KeepAlive(r)
	if r.Dropped() != 0 {
		t.Fatalf("%d Events dropped", r.Dropped())
	}
	const limit = 2816 << 10 // 4,096 series of 704 bytes
	t.Logf("%d Events: recorder holds %d bytes (%d series)", n, held, r.Len())
	if held > limit {
		t.Errorf("after %d Events the recorder holds %d bytes (%d per Event), want at most %d: memory must not grow with the Events sent", n, held, held/n, limit)
	}
	if r.Len() != 4096 {
		t.Errorf("remembers %d series, want the cache size, 4096", r.Len())
	}
}

// TestSeries: a repeat within the window extends the first Event's series
// (count and last time, one patch per repeat written); another note, another
// object, a repeat after the window, or one whose series was forgotten to
// make room start a new Event.
func TestSeries(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	a := &api{keep: true}
	r := start(t, a, eventrec.Options{Clock: clk, CacheSize: 2})
	svc := service(1)
	ensured := func(obj *corev1.Service, addr string) {
		r.Eventf(obj, nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured %s load balancer at %s", "memory", addr)
	}

	ensured(svc, "10.0.0.1")
	waitCalls(t, a, 1)
	clk.Step(time.Minute)
	later := svc.DeepCopy()
	later.ResourceVersion = "8" // every write changes it; still the same object
	ensured(later, "10.0.0.1")
	waitCalls(t, a, 2)
	creates, patches, _ := a.written()
	if len(creates) != 1 || len(patches) != 1 {
		t.Fatalf("after a repeat: %d creates, %d patches; want 1 and 1", len(creates), len(patches))
	}
	first := creates[0]
	want := fmt.Sprintf(`%s {"series":{"count":2,"lastObservedTime":"2026-11-30T12:01:00.000000Z"}}`, first.Name)
	if patches[0] != want {
		t.Errorf("series patch\n got %s\nwant %s", patches[0], want)
	}
	if first.Note != "Ensured memory load balancer at 10.0.0.1" || first.Namespace != "apps" ||
		first.Regarding.Kind != "Service" || first.Regarding.Name != "web-1" || first.Regarding.UID != "uid-1" ||
		first.ReportingController != "portico-operator" || first.ReportingInstance != "portico-operator-a" ||
		first.Action != "Ensure" || first.Reason != "Ensured" || first.Type != corev1.EventTypeNormal ||
		!first.EventTime.Time.Equal(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)) || first.Series != nil ||
		!strings.HasPrefix(first.Name, "web-1.") {
		t.Errorf("first Event %+v", first)
	}

	for _, tc := range []struct {
		name string
		step time.Duration
		emit func()
	}{
		{"another note", 0, func() { ensured(svc, "10.0.0.2") }},
		{"another object", 0, func() { ensured(service(2), "10.0.0.1") }},
		// The cache holds two series: web-1 at 10.0.0.1 was the least
		// recently seen and made room for web-2.
		{"forgotten to make room", 0, func() { ensured(svc, "10.0.0.1") }},
		{"after the window", 7 * time.Minute, func() { ensured(svc, "10.0.0.1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, patchesBefore, calls := a.written()
			clk.Step(tc.step)
			tc.emit()
			waitCalls(t, a, calls+1)
			after, patchesAfter, _ := a.written()
			if len(after) != len(before)+1 || len(patchesAfter) != len(patchesBefore) {
				t.Errorf("%d creates and %d patches, want a new Event (%d creates, %d patches)", len(after), len(patchesAfter), len(before)+1, len(patchesBefore))
			}
		})
	}
}

// TestRepeatsWhileWritingCoalesce: repeats that arrive while the Event is
// being written are one patch with their count, not a write each.
func TestRepeatsWhileWritingCoalesce(t *testing.T) {
	a := &api{keep: true, entered: make(chan struct{}, 10), block: make(chan struct{})}
	r := start(t, a, eventrec.Options{})
	r.Eventf(service(1), nil, corev1.EventTypeWarning, "SyncFailed", "Ensure", "quota exceeded")
	<-a.entered // the create is on its way
	for range 49 {
		r.Eventf(service(1), nil, corev1.EventTypeWarning, "SyncFailed", "Ensure", "quota exceeded")
	}
	close(a.block)
	waitCalls(t, a, 2)
	time.Sleep(100 * time.Millisecond)
	creates, patches, calls := a.written()
	if calls != 2 || len(creates) != 1 || len(patches) != 1 || !strings.Contains(patches[0], `"count":50`) {
		t.Errorf("%d calls (%d creates, patches %q), want one create and one patch of count 50", calls, len(creates), patches)
	}
}

// TestFullQueueDropsWithoutBlocking: while the API does not answer, Eventf
// returns at once and Events beyond the queue are dropped and counted, in
// portico_events_dropped_total too.
func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	a := &api{entered: make(chan struct{}, 100), block: make(chan struct{})}
	r := start(t, a, eventrec.Options{QueueSize: 10, Workers: 1})
	metric := eventrec.DroppedTotal.WithLabelValues("portico-operator")
	before := testutil.ToFloat64(metric)
	r.Eventf(service(0), nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured")
	<-a.entered // the worker holds the first; ten more fit in the queue
	done := make(chan struct{})
	go func() {
		for i := 1; i < 100; i++ {
			r.Eventf(service(i), nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Eventf blocked while the API did not answer")
	}
	close(a.block)
	if d := r.Dropped(); d != 89 {
		t.Errorf("dropped %d Events, want 89 (one in the worker, ten queued)", d)
	}
	if d := testutil.ToFloat64(metric) - before; d != 89 {
		t.Errorf("portico_events_dropped_total rose by %v, want 89", d)
	}
	waitCalls(t, a, 11)
}

// TestRetries: an API that did not answer (a transport error, 500, 429) is
// tried again; one that refused the Event (invalid, forbidden) is not; a
// series whose Event is gone goes on in a new Event that carries the count.
func TestRetries(t *testing.T) {
	gr := schema.GroupResource{Group: "events.k8s.io", Resource: "events"}
	for _, tc := range []struct {
		name  string
		fail  []error
		calls int
		ok    bool
	}{
		{"transport error", []error{errors.New("connection refused")}, 2, true},
		{"server error then throttled", []error{apierrors.NewInternalError(errors.New("etcd")), apierrors.NewTooManyRequests("slow down", 1)}, 3, true},
		{"invalid", []error{apierrors.NewInvalid(schema.GroupKind{Group: "events.k8s.io", Kind: "Event"}, "x", field.ErrorList{field.Required(field.NewPath("note"), "")})}, 1, false},
		{"forbidden", []error{apierrors.NewForbidden(gr, "x", errors.New("RBAC"))}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &api{keep: true, fail: tc.fail}
			r := start(t, a, eventrec.Options{RetryAfter: time.Millisecond})
			r.Eventf(service(1), nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured")
			waitCalls(t, a, tc.calls)
			time.Sleep(50 * time.Millisecond)
			creates, _, calls := a.written()
			if calls != tc.calls || (len(creates) == 1) != tc.ok {
				t.Errorf("%d calls, %d created; want %d calls, created %v", calls, len(creates), tc.calls, tc.ok)
			}
		})
	}

	t.Run("series of a deleted Event", func(t *testing.T) {
		a := &api{keep: true}
		r := start(t, a, eventrec.Options{})
		r.Eventf(service(1), nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured")
		waitCalls(t, a, 1)
		a.mu.Lock()
		a.fail = []error{apierrors.NewNotFound(gr, "web-1.x")}
		a.mu.Unlock()
		r.Eventf(service(1), nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured")
		waitCalls(t, a, 3)
		creates, _, _ := a.written()
		if len(creates) != 2 || creates[1].Series == nil || creates[1].Series.Count != 2 || creates[1].Name == creates[0].Name {
			t.Fatalf("after the patch found no Event: creates %+v, want a second Event with series count 2", creates)
		}
	})
}

// TestRefusedInput: an unsupported type or an object without a reference
// records nothing; a note longer than the API takes is cut at a character
// boundary, and an object name too long for the Event's name is cut.
func TestRefusedInput(t *testing.T) {
	a := &api{keep: true}
	r := start(t, a, eventrec.Options{})
	r.Eventf(service(1), nil, "Critical", "Ensured", "Ensure", "Ensured")
	r.Eventf(&unstructured.Unstructured{}, nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured") // no kind
	long := strings.Repeat("é", 600)                                                                    // 1,200 bytes
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 240) + "-b"}}
	r.Eventf(node, nil, corev1.EventTypeWarning, "InterfaceLost", "Announce", "%s", long)
	waitCalls(t, a, 1)
	time.Sleep(50 * time.Millisecond)
	creates, _, calls := a.written()
	if calls != 1 {
		t.Fatalf("%d calls, want only the Node's Event", calls)
	}
	ev := creates[0]
	if len(ev.Note) != 1024 || ev.Note != long[:1024] {
		t.Errorf("note of %d bytes, want the first 1,024 (512 characters)", len(ev.Note))
	}
	if len(ev.Name) > 253 || strings.Contains(ev.Name, "-.") || ev.Namespace != metav1.NamespaceDefault {
		t.Errorf("Event %s in %q: want a valid name of at most 253 bytes in %q", ev.Name, ev.Namespace, metav1.NamespaceDefault)
	}
}

// TestAgainstTheAPIServer: the real apiserver takes the Events and their
// series patches as written, and shows them as core Events with a count.
func TestAgainstTheAPIServer(t *testing.T) {
	env := testenv.Start(t)
	cs, err := eventsclient.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	r := eventrec.New(cs, env.Scheme, eventrec.Options{Controller: "portico-operator"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Start(ctx) }()

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "u-1"}}
	for range 3 {
		r.Eventf(svc, nil, corev1.EventTypeWarning, "SyncFailed", "Ensure", "quota exceeded: %s", strings.Repeat("x", 2000))
		time.Sleep(200 * time.Millisecond)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "u-2"}}
	r.Eventf(ns, nil, corev1.EventTypeNormal, "ClusterIdentity", "Start", "portico-operator uses cluster ID c1")
	testenv.Eventually(t, 10*time.Second, func() error {
		var list corev1.EventList
		if err := env.Client.List(ctx, &list); err != nil {
			return err
		}
		var got []string
		for _, e := range list.Items {
			count := int32(1)
			if e.Series != nil {
				count = e.Series.Count
			}
			got = append(got, fmt.Sprintf("%s/%s %s count=%d note=%d", e.Namespace, e.InvolvedObject.Name, e.Reason, count, len(e.Message)))
		}
		want := []string{"default/web SyncFailed count=3 note=1024", "default/kube-system ClusterIdentity count=1 note=35"}
		for _, w := range want {
			if !strings.Contains(strings.Join(got, "\n"), w) {
				return fmt.Errorf("events %q, want %q", got, want)
			}
		}
		return nil
	})
}

// TestKeepsUpWithTheReconcilers: 32 reconcilers (the operator's bench
// setting) that each write once and record one Event, as the record pass
// does, through an API that takes as long for either, lose no Event: the
// recorder writes as many at once as they do. With four writers, a first
// version dropped 60-75 % of bench-scale's Ensured Events once its queue
// filled.
func TestKeepsUpWithTheReconcilers(t *testing.T) {
	const reconcilers, perReconciler, latency = 32, 400, 2 * time.Millisecond
	a := &api{latency: latency}
	r := start(t, a, eventrec.Options{})
	var wg sync.WaitGroup
	for w := range reconcilers {
		wg.Go(func() {
			for i := range perReconciler {
				time.Sleep(latency) // the reconcile's own write
				r.Eventf(service(w*perReconciler+i), nil, corev1.EventTypeNormal, "Ensured", "Ensure", "Ensured")
			}
		})
	}
	wg.Wait()
	if d := r.Dropped(); d != 0 {
		t.Errorf("dropped %d of %d Events", d, reconcilers*perReconciler)
	}
	waitCalls(t, a, reconcilers*perReconciler-int(r.Dropped()))
}
