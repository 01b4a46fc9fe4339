package operator

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/testenv"
)

// TestServiceCacheSharesRepeatedValues: the values that repeat across
// thousands of cached LoadBalancer Services (type, class, finalizer, port
// protocol and name, traffic and IP family policies, the address's IP mode,
// the conditions' types, statuses and reasons, and the message of a Ready
// condition) are kept once, not once per Service as the decoder leaves
// them.
func TestServiceCacheSharesRepeatedValues(t *testing.T) {
	const n = 5000
	svc := appliedService()
	delete(svc.Annotations, corev1.LastAppliedConfigAnnotation)
	svc.ManagedFields = nil
	svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	svc.Status.Conditions = []metav1.Condition{
		{Type: controllers.ConditionReady, Status: metav1.ConditionTrue, Reason: "Provisioned", Message: "load balancer is provisioned"},
		{Type: "lb.portico.dev/Serving", Status: metav1.ConditionFalse, Reason: "NoReadyEndpoints", Message: "no ready endpoint: no pod matches the selector app=shop in namespace web"},
	}
	wire := make([][]byte, n)
	for i := range wire {
		s := svc.DeepCopy()
		s.Name, s.UID = fmt.Sprintf("svc-%d", i), "uid"
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		wire[i] = b
	}
	per, _ := bytesPerCached(t, wire, transformFor(t, svc), func(b []byte) (any, error) {
		s := &corev1.Service{}
		return s, s.Unmarshal(b)
	})
	t.Logf("%.0f bytes per cached Service", per)
	if per > 2420 { // 2,530 with a copy of every value per Service
		t.Errorf("a cached LoadBalancer Service holds %.0f bytes, want at most 2420", per)
	}
}

// bytesPerCached decodes each of wire as the watch does (every string its
// own), passes it through the cache's transform trim, and returns the live
// heap each cached object holds, and the cached objects.
func bytesPerCached(t *testing.T, wire [][]byte, trim func(any) (any, error), decode func([]byte) (any, error)) (float64, []any) {
	t.Helper()
	cached := make([]any, len(wire))
	before := testenv.LiveHeap()
	for i, b := range wire {
		obj, err := decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if cached[i], err = trim(obj); err != nil {
			t.Fatal(err)
		}
	}
	per := float64(testenv.LiveHeap()-before) / float64(len(wire))
	runtime.KeepAlive(wire)
	return per, cached
}
