package controllers

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/reference"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// regardingRecorder keeps the object each Event is about, resolved as
// client-go's events recorder resolves it (reference.GetReference).
type regardingRecorder struct {
	mu   sync.Mutex
	refs []corev1.ObjectReference
	errs []error
}

func (r *regardingRecorder) Eventf(regarding, _ apiruntime.Object, _, reason, _, _ string, _ ...any) {
	ref, err := reference.GetReference(scheme.New(), regarding)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
		return
	}
	ref.FieldPath = reason // which Event, for the test
	r.refs = append(r.refs, *ref)
}

// blockingEnsure holds Ensure until release is closed.
type blockingEnsure struct {
	providers.Provider
	release chan struct{}
}

func (b blockingEnsure) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	<-b.release
	return b.Provider.Ensure(ctx, d)
}

// fixedEnsure answers every Ensure with status at once.
type fixedEnsure struct {
	providers.Provider
	status *providers.Status
}

func (f fixedEnsure) Ensure(context.Context, *providers.LoadBalancer) (*providers.Status, error) {
	return f.status, nil
}

func progressService() *corev1.Service {
	svc := gen.Service("ns", "web", gen.WithClass("lb.portico.dev/memory"),
		gen.WithAnnotation("example.com/owner", "team-a"), gen.WithAnnotation("example.com/tier", "frontend"))
	svc.ResourceVersion = "41"
	svc.Labels = map[string]string{"app": "web", "tier": "frontend"}
	svc.Finalizers = []string{Finalizer}
	svc.Spec.ClusterIP = "10.96.0.10"
	svc.Spec.ClusterIPs = []string{"10.96.0.10"}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	svc.Status.Conditions = []metav1.Condition{{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Ensured",
		Message: "load balancer ensured", LastTransitionTime: metav1.Now()}}
	return svc
}

// TestSlowEnsureEventNamesTheService: when a changed load balancer's Ensure
// outlasts ensuringEventAfter, the Ensuring Event is about the Service as
// it was when Ensure began (kind, namespace, name, UID, resourceVersion),
// whatever the reconcile does to its copy meanwhile.
func TestSlowEnsureEventNamesTheService(t *testing.T) {
	rec := &regardingRecorder{}
	r := &ServiceReconciler{Recorder: rec}
	p := blockingEnsure{Provider: memory.New(memory.Options{ClusterID: "test"}), release: make(chan struct{})}
	svc := progressService()
	d, err := Desired(DesiredInput{ClusterID: "test", Class: "lb.portico.dev/memory", Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := r.ensureWithProgress(context.Background(), p, svc, d, true)
		done <- err
	}()
	time.Sleep(ensuringEventAfter + 300*time.Millisecond)
	close(p.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	svc.ResourceVersion, svc.Name = "42", "changed" // after the Event: the test's own copy
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) > 0 {
		t.Fatalf("the Event's object has no reference: %v", rec.errs)
	}
	want := corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: "ns", Name: "web", UID: "uid-web",
		ResourceVersion: "41", FieldPath: ReasonEnsuring}
	if len(rec.refs) != 1 || rec.refs[0] != want {
		t.Errorf("Events about %+v, want one about %+v", rec.refs, want)
	}
}

// TestEnsureCopiesNoService: a changed Ensure arms the timer of the
// Ensuring Event without copying the Service. Before, every changed Ensure
// deep-copied the whole Service for an Event that a fast backend never
// sends: at 10,000 Services a node change made as many copies.
func TestEnsureCopiesNoService(t *testing.T) {
	r := &ServiceReconciler{Recorder: &regardingRecorder{}}
	// A backend that allocates nothing: what is measured is the call.
	p := fixedEnsure{Provider: memory.New(memory.Options{ClusterID: "test"}), status: &providers.Status{}}
	svc := progressService()
	d, err := Desired(DesiredInput{ClusterID: "test", Class: "lb.portico.dev/memory", Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bytesPerEnsure := func(changed bool) uint64 {
		const n = 500
		if _, err := r.ensureWithProgress(ctx, p, svc, d, changed); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			if _, err := r.ensureWithProgress(ctx, p, svc, d, changed); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / n
	}
	unchanged, changed := bytesPerEnsure(false), bytesPerEnsure(true)
	extra := int64(changed) - int64(unchanged)
	t.Logf("Ensure: %d bytes unchanged, %d changed (the Ensuring timer: %d); a deep copy of the Service: %d",
		unchanged, changed, extra, sizeOfDeepCopy(svc))
	// The timer and its function cost a few hundred bytes; a copy of the
	// Service a kilobyte and more.
	if extra > 400 {
		t.Errorf("a changed Ensure allocated %d bytes more than an unchanged one, want <= 400", extra)
	}
}

func sizeOfDeepCopy(svc *corev1.Service) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_ = svc.DeepCopy()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
