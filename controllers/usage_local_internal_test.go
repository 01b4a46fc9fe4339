package controllers

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
	"github.com/portico-lb/portico/usage/meters"
)

// A local LoadBalancer's cost shows the GB the forwarders counted, priced
// per GB from the ConfigMap: snapshots as the forwarders write them on their
// Leases, through the local meter and the tracker, into status.cost.usage.
func TestLocalUsageFromForwarderSnapshots(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	snaps := map[string]string{}
	put := func(node, epoch string, at time.Duration, bytes uint64) {
		s := &usage.ByteSnapshot{Epoch: epoch, Time: t0.Add(at), Bytes: map[netip.Addr]uint64{vip: bytes}}
		v, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		snaps[node] = v
	}
	m := &meters.LocalBytes{Snapshots: func(context.Context) (map[string]string, error) { return snaps, nil }}
	now := t0
	tr, err := usage.NewTracker(usage.Options{Meters: []usage.Meter{m}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	poll := func() {
		if err := m.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Node a forwards 30 GB between 03:00 and 04:00, then fails; node b
	// (counters of another epoch, 5 GB of old traffic) takes over and
	// forwards 18 GB more before 05:00.
	put("a", "ea", 0, 1_000_000_000)
	put("b", "eb", 0, 5_000_000_000)
	poll()
	put("a", "ea", 59*time.Minute, 31_000_000_000)
	poll()
	put("b", "eb", 90*time.Minute, 23_000_000_000)
	poll()

	base, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	override, err := pricing.Parse([]byte(`asOf: "2026-11-01"
currency: USD
products:
- kind: local-address
  prices:
  - regions: ["*"]
    units:
      addresses: {item: address, hourly: "0.001"}
    perGB:
      data-processed: "0.01"
`), "configmap:portico-system/portico-prices")
	if err != nil {
		t.Fatal(err)
	}
	priced, err := pricing.Load(base, override)
	if err != nil {
		t.Fatal(err)
	}
	unpriced, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}

	in := providers.CostInputs{Kind: "local-address", Units: map[string]int{"addresses": 1}, MeterID: vip.String()}
	_, _ = tr.Usage(in) // first ask: read at the next refresh
	now = t0.Add(2*time.Hour + 5*time.Minute)
	if failed := tr.Refresh(context.Background(), true); len(failed) != 0 {
		t.Fatalf("Refresh: %v", failed)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: metav1.NewTime(t0.Add(-48 * time.Hour))}}

	r := &ServiceReconciler{Pricer: priced, Usage: tr, Recorder: events.NewFakeRecorder(5)}
	s := &lbv1.LoadBalancerStatus{}
	r.price(context.Background(), svc, "lb.portico.dev/local", &providers.Status{Cost: in}, s)
	if s.Cost == nil || s.Cost.Usage == nil || s.Cost.Usage.LastDay == nil {
		t.Fatalf("cost %+v, want usage", s.Cost)
	}
	day := s.Cost.Usage.LastDay
	// 30 GB + 18 GB over 03:00-05:00, the hours measured: 0.48, 0.24 an hour.
	if len(day.Items) != 1 || day.Items[0].Quantity != "48" || day.Items[0].Unit != "GB" || day.Amount != "0.48" ||
		s.Cost.Usage.Hourly != "0.24" || !day.Start.Time.Equal(t0) || !day.End.Time.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("last day %+v, hourly %s; want 48 GB for 0.48 over 03:00-05:00, 0.24 an hour", day, s.Cost.Usage.Hourly)
	}
	if c := meta.FindStatusCondition(s.Conditions, usage.ConditionType); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("usage condition %+v, want True", c)
	}

	// Without a per-GB price the data is UnitNotPriced, never free: the
	// cost stays the address price.
	s = &lbv1.LoadBalancerStatus{}
	r.Pricer = unpriced
	r.price(context.Background(), svc, "lb.portico.dev/local", &providers.Status{Cost: in}, s)
	if s.Cost == nil || s.Cost.Usage != nil {
		t.Errorf("cost %+v, want the estimate without usage", s.Cost)
	}
	if c := meta.FindStatusCondition(s.Conditions, usage.ConditionType); c == nil || c.Reason != pricing.ReasonUnitNotPriced {
		t.Errorf("usage condition %+v, want False %s", c, pricing.ReasonUnitNotPriced)
	}
}
