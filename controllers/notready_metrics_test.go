package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/model"
)

func TestNotReadyMetric(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	svc := func(name string, class *string, conds ...metav1.Condition) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name},
			Spec:   corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class},
			Status: corev1.ServiceStatus{Conditions: conds}}
	}
	cond := func(status metav1.ConditionStatus, reason string, ago time.Duration) metav1.Condition {
		return metav1.Condition{Type: ConditionReady, Status: status, Reason: reason, LastTransitionTime: metav1.NewTime(now.Add(-ago))}
	}
	cl := fake.NewClientBuilder().WithObjects(
		svc("ready", ptr.To("lb.portico.dev/aws"), cond(metav1.ConditionTrue, "Provisioned", time.Hour)),
		svc("pending", nil, cond(metav1.ConditionFalse, "PoolExhausted", 20*time.Minute)),
		svc("stuck", ptr.To("lb.portico.dev/aws"), cond(metav1.ConditionFalse, "ProviderError", 90*time.Second)),
		svc("foreign", ptr.To("example.com/other")), // no condition: not Portico's
	).Build()
	m := NewNotReadyMetric()
	m.now = func() time.Time { return now }
	if n := testutil.CollectAndCount(m); n != 0 {
		t.Fatalf("without a source: %d series, want 0", n)
	}
	m.SetSource(cl, func() model.Classes {
		return model.Classes{Enabled: []string{"lb.portico.dev/aws", "lb.portico.dev/local"}, Default: "lb.portico.dev/local"}
	})
	want := `
# HELP portico_service_not_ready_seconds Seconds since the lb.portico.dev/Ready condition of a Service that is not Ready last changed, by namespace, service, class and the condition's reason.
# TYPE portico_service_not_ready_seconds gauge
portico_service_not_ready_seconds{class="lb.portico.dev/aws",namespace="web",reason="ProviderError",service="stuck"} 90
portico_service_not_ready_seconds{class="lb.portico.dev/local",namespace="web",reason="PoolExhausted",service="pending"} 1200
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
