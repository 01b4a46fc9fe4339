package controllers

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/testenv"
)

// heapAfter is the live heap after f, once collected.
func heapAfter(f func()) uint64 {
	f()
	return testenv.LiveHeap()
}

// TestTransientMapsReleaseTheirMemory: what the reconciler remembers for a
// while (its own writes to new Services until the cache shows them, the
// Services marked for a re-ensure, the failure counts, the Services on their
// way to their first address) is released once
// nothing is left in it. A Go map keeps its size after its entries are
// deleted: after a start with 10,000 new Services, the map of own writes
// held 3.8 MB for the rest of the run (bench-scale's heap profile).
func TestTransientMapsReleaseTheirMemory(t *testing.T) {
	const n = 10000
	svcs := make([]*corev1.Service, n)
	rec := &lbv1.LoadBalancer{}
	for i := range svcs {
		svcs[i] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: fmt.Sprintf("svc-%d", i),
			UID: types.UID(fmt.Sprintf("uid-%d", i)), ResourceVersion: "1"}}
	}
	r := &ServiceReconciler{}
	base := heapAfter(func() {})
	held := heapAfter(func() {
		for _, svc := range svcs {
			r.wroteOwn(svc, "1", "lb.portico.dev/memory", rec)
			r.markReensure(keyOf(svc))
			r.backoff(keyOf(svc))
			r.addressing.set(keyOf(svc), true)
		}
	})
	if held < base+n*50 {
		t.Fatalf("the maps hold %d bytes for %d Services: the measurement does not see them", held-base, n)
	}
	left := heapAfter(func() {
		for _, svc := range svcs {
			svc.ResourceVersion = "2" // the cache shows the finalizer and the record
			r.trustOwnWrites(svc, rec)
			r.upToDate(keyOf(svc), "")
			r.remember(keyOf(svc), "", nil, nil) // a success clears the failures
			r.addressing.set(keyOf(svc), false)
		}
		r.mu.Lock()
		r.applied = nil // not transient; not measured here
		r.mu.Unlock()
	})
	if left > base+64<<10 {
		t.Errorf("with nothing left in them the maps still hold %d kB (%d kB with 10,000 entries)", (left-base)>>10, (held-base)>>10)
	}
	runtime.KeepAlive(r)
	runtime.KeepAlive(svcs)
}

func keyOf(svc *corev1.Service) types.NamespacedName {
	return types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
}

// TestRecordPassKeepsNoRecord: a record created in the record pass (a
// cloud-like class's, after the address) is not held in memory: only a
// record created beside this process's own finalizer patch is, until the
// cache shows both. Held until the resync, 10,000 records cost 20 MB.
func TestRecordPassKeepsNoRecord(t *testing.T) {
	r := &ServiceReconciler{}
	svc := gen.Service("ns", "web", gen.WithClass("lb.portico.dev/memory"))
	svc.UID = "uid-web"
	rec := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	r.wroteOwnRecord(svc, rec)
	if len(r.own) != 0 {
		t.Fatalf("a record created in the record pass is held: %v", r.own)
	}
	r.wroteOwn(svc, "1", "lb.portico.dev/memory", nil)
	r.wroteOwnRecord(svc, rec)
	if w := r.own[keyOf(svc)]; w.record != rec {
		t.Fatalf("a record created beside the finalizer patch is not held: %+v", w)
	}
}
