package pricing

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portico-lb/portico/api/v1alpha1"
)

func TestMetricsSetAndDelete(t *testing.T) {
	m := NewMetrics()
	cost := func(hourly, region string) *v1alpha1.CostStatus {
		return &v1alpha1.CostStatus{Hourly: hourly, Region: region, Currency: "USD"}
	}
	for _, err := range []error{
		m.Set("web", "a", "lb.portico.dev/aws", cost("0.0225", "us-east-1")),
		m.Set("web", "b", "lb.portico.dev/aws", cost("0.03", "us-east-1")),
		m.Set("web", "b", "lb.portico.dev/gcp", cost("0.025", "us-central1")), // replaces b's aws series
		m.Set("web", "c", "lb.portico.dev/aws", cost("0.01", "us-east-1")),
		m.Set("web", "c", "lb.portico.dev/aws", nil), // cannot be priced: no value
		m.Set("db", "a", "lb.portico.dev/aws", cost("1", "eu-west-1")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	m.Delete("db", "a")
	if err := m.Set("web", "d", "lb.portico.dev/aws", cost("lots", "us-east-1")); err == nil {
		t.Error("an unparsable hourly amount: no error")
	}
	want := `
# HELP portico_loadbalancer_hourly_cost Estimated hourly cost of a load balancer from list prices, in the currency of its price data (status.cost.currency, USD for the embedded prices).
# TYPE portico_loadbalancer_hourly_cost gauge
portico_loadbalancer_hourly_cost{class="lb.portico.dev/aws",namespace="web",region="us-east-1",service="a"} 0.0225
portico_loadbalancer_hourly_cost{class="lb.portico.dev/gcp",namespace="web",region="us-central1",service="b"} 0.025
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	m.Delete("web", "a")
	m.Delete("web", "b")
	if n := testutil.CollectAndCount(m); n != 0 || len(m.shared) != 0 {
		t.Errorf("after deleting every series: %d series, %d shared label pairs left", n, len(m.shared))
	}
}

// TestMetricsBytesPerLoadBalancer: the gauge holds one value per load
// balancer, not a client_golang child with its label pairs. At 10,000
// Services the GaugeVec's children held about 6.5 MB of the operator's heap
// for the whole run (bench-scale's heap profile).
func TestMetricsBytesPerLoadBalancer(t *testing.T) {
	const n = 10000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%d", i)
	}
	cost := &v1alpha1.CostStatus{Hourly: "0.0225", Region: "us-east-1", Currency: "USD"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := NewMetrics()
	for _, name := range names {
		if err := m.Set("scale", name, "lb.portico.dev/aws", cost); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perLB := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / n
	t.Logf("held: %.0f bytes per load balancer", perLB)
	if perLB > 220 { // a third of the GaugeVec's 654
		t.Errorf("the cost gauge holds %.0f bytes per load balancer, want at most 220", perLB)
	}
	runtime.KeepAlive(names)

	// A scrape sends the series themselves: it allocates per load balancer
	// the registry's own sample (dto.Metric) and its bookkeeping, not new
	// label pairs.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&before)
	const scrapes = 3
	for range scrapes {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || len(mfs[0].Metric) != n {
			t.Fatalf("gathered %d families, want 1 with %d series", len(mfs), n)
		}
	}
	runtime.ReadMemStats(&after)
	perScrape := float64(after.TotalAlloc-before.TotalAlloc) / scrapes / n
	t.Logf("scrape: %.0f bytes per load balancer", perScrape)
	if perScrape > 700 {
		t.Errorf("a scrape allocates %.0f bytes per load balancer, want at most 700", perScrape)
	}
}
