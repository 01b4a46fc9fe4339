package operator

import (
	"encoding/json"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
)

// memoryRecord is a LoadBalancer record of a memory load balancer as the
// operator leaves it.
func memoryRecord(i int) *lbv1.LoadBalancer {
	name := fmt.Sprintf("svc-%d", i)
	now := metav1.Now()
	return &lbv1.LoadBalancer{
		TypeMeta: metav1.TypeMeta{APIVersion: "lb.portico.dev/v1alpha1", Kind: "LoadBalancer"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name, UID: "uid-r", ResourceVersion: "12", Generation: 1,
			CreationTimestamp: now, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: name, UID: "uid-s",
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: lbv1.LoadBalancerSpec{Class: "lb.portico.dev/memory"},
		Status: lbv1.LoadBalancerStatus{
			Class:     "lb.portico.dev/memory",
			Addresses: []lbv1.LoadBalancerAddress{{IP: fmt.Sprintf("10.128.%d.%d", i/250, i%250), IPMode: "VIP"}},
			Address:   fmt.Sprintf("10.128.%d.%d", i/250, i%250),
			Ports:     []lbv1.PortStatus{{Port: 80, Protocol: "TCP"}},
			Resources: []lbv1.ProviderResource{{Kind: "loadBalancer", ID: "lb-" + name}, {Kind: "listener", ID: "lb-" + name + "/TCP/80"}},
			Backends:  lbv1.BackendStatus{Total: 5000, Healthy: 5000}, BackendsSummary: "5000/5000",
			Endpoints: &lbv1.EndpointsStatus{},
			Ready:     "True",
			Cost: &lbv1.CostStatus{Hourly: "0.0000", Monthly: "0.00", Currency: "USD", Source: "embedded", Basis: "list price",
				Breakdown: []lbv1.CostItem{{Item: "listeners", Quantity: 1, Hourly: "0.0000"}, {Item: "targets", Quantity: 5000, Hourly: "0.0000"}}},
			MonthlyCost: "0.00 USD",
			Conditions: []metav1.Condition{
				{Type: controllers.ConditionReady, Status: metav1.ConditionTrue, Reason: "Provisioned", Message: "load balancer is provisioned", LastTransitionTime: now, ObservedGeneration: 1},
				{Type: "lb.portico.dev/Priced", Status: metav1.ConditionTrue, Reason: "Priced", Message: "priced from the embedded catalog", LastTransitionTime: now, ObservedGeneration: 1},
			},
			LastSyncTime: &now, AppliedHash: "0123456789abcdef01234567", ObservedGeneration: 1,
		},
	}
}

// TestRecordCacheSharesRepeatedValues: the values that repeat across
// thousands of cached LoadBalancer records (namespace, owner kind, class,
// IP mode, protocols, resource kinds, readiness, cost currency, source,
// basis and amounts, the conditions' types, statuses, reasons and the
// messages of True conditions) are kept once, not once per record as the
// JSON decoder leaves them; the records were the largest part of the
// operator's heap at bench-scale's peak (about 2.7 kB each).
func TestRecordCacheSharesRepeatedValues(t *testing.T) {
	const n = 5000
	wire := make([][]byte, n)
	for i := range wire {
		b, err := json.Marshal(memoryRecord(i))
		if err != nil {
			t.Fatal(err)
		}
		wire[i] = b
	}
	per, cached := bytesPerCached(t, wire, transformFor(t, &lbv1.LoadBalancer{}), func(b []byte) (any, error) {
		rec := &lbv1.LoadBalancer{}
		return rec, json.Unmarshal(b, rec)
	})
	t.Logf("%.0f bytes per cached record", per)
	if per > 1650 { // 1,870 with a copy of every value per record
		t.Errorf("a cached record holds %.0f bytes, want at most 1650", per)
	}
	if got := cached[7].(*lbv1.LoadBalancer); got.Status.Cost.Currency != "USD" || got.Status.Conditions[0].Reason != "Provisioned" || got.Name != "svc-7" {
		t.Errorf("the cached record changed: %+v", got)
	}
}
