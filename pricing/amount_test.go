package pricing_test

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
)

func TestAmounts(t *testing.T) {
	tests := []struct {
		in, exact, cents string
	}{
		{"0", "0", "0.00"},
		{"0.0225", "0.0225", "0.02"},
		{"20.805", "20.805", "20.81"},
		{"16.425", "16.425", "16.43"},
		{"0.0050", "0.005", "0.01"},
		{"0.0049", "0.0049", "0.00"},
		{"12", "12", "12.00"},
		{"999999999999.9999999999", "999999999999.9999999999", "1000000000000.00"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := pricing.ParseAmount(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := pricing.FormatAmount(r); got != tt.exact {
				t.Errorf("FormatAmount = %s, want %s", got, tt.exact)
			}
			if got := pricing.RoundAmount(r, 2); got != tt.cents {
				t.Errorf("RoundAmount(2) = %s, want %s", got, tt.cents)
			}
		})
	}
	for _, bad := range []string{"", "-1", "+1", "1e3", ".5", "5.", "1,5", "0x10", " 1", "NaN", "1.00000000001"} {
		if _, err := pricing.ParseAmount(bad); err == nil {
			t.Errorf("ParseAmount(%q) succeeded", bad)
		}
	}
	// Rounding of values with no finite decimal expansion, and of negatives.
	if got := pricing.RoundAmount(big.NewRat(2, 3), 2); got != "0.67" {
		t.Errorf("RoundAmount(2/3) = %s", got)
	}
	if got := pricing.RoundAmount(big.NewRat(-1, 8), 2); got != "-0.13" {
		t.Errorf("RoundAmount(-1/8) = %s", got)
	}
	if got := pricing.RoundAmount(big.NewRat(-1, 1000), 2); got != "0.00" {
		t.Errorf("RoundAmount(-1/1000) = %s, want 0.00 without a sign", got)
	}
	if got := pricing.FormatAmount(big.NewRat(1, 3)); got != "0.3333333333" {
		t.Errorf("FormatAmount(1/3) = %s", got)
	}
}

func TestCondition(t *testing.T) {
	cost := &v1alpha1.CostStatus{Hourly: "0.0285", Monthly: "20.805", Currency: "USD", Source: "embedded:aws-2026-11-21"}
	tests := []struct {
		name   string
		cost   *v1alpha1.CostStatus
		err    error
		status metav1.ConditionStatus
		reason string
	}{
		{"priced", cost, nil, metav1.ConditionTrue, pricing.ReasonPriced},
		{"region not priced", nil, &pricing.Error{Reason: pricing.ReasonRegionNotPriced, Message: "no price"}, metav1.ConditionFalse, pricing.ReasonRegionNotPriced},
		{"wrapped pricing error", nil, errors.Join(errors.New("pricing"), &pricing.Error{Reason: pricing.ReasonPriceDataInvalid, Message: "bad"}), metav1.ConditionFalse, pricing.ReasonPriceDataInvalid},
		{"other error", nil, errors.New("boom"), metav1.ConditionFalse, "PricingFailed"},
		{"neither cost nor error", nil, nil, metav1.ConditionFalse, "PricingFailed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pricing.Condition(tt.cost, tt.err, 7)
			if c.Type != pricing.ConditionType || c.Status != tt.status || c.Reason != tt.reason || c.ObservedGeneration != 7 || c.Message == "" {
				t.Errorf("Condition = %+v, want status %s reason %s", c, tt.status, tt.reason)
			}
		})
	}
	if c := pricing.Condition(cost, nil, 1); !strings.Contains(c.Message, "20.805") || !strings.Contains(c.Message, "embedded:aws-2026-11-21") {
		t.Errorf("message %q lacks the monthly cost or the source", c.Message)
	}
}

func TestMetrics(t *testing.T) {
	m := pricing.NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)

	cost := &v1alpha1.CostStatus{Hourly: "0.0385", Monthly: "28.105", Currency: "USD", Region: "us-east-1"}
	if err := m.Set("shop", "web", "lb.portico.dev/aws", cost); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("shop", "db", "lb.portico.dev/aws", &v1alpha1.CostStatus{Hourly: "0.0225", Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP portico_loadbalancer_hourly_cost Estimated hourly cost of a load balancer from list prices, in the currency of its price data (status.cost.currency, USD for the embedded prices).
# TYPE portico_loadbalancer_hourly_cost gauge
portico_loadbalancer_hourly_cost{class="lb.portico.dev/aws",namespace="shop",region="us-east-1",service="db"} 0.0225
portico_loadbalancer_hourly_cost{class="lb.portico.dev/aws",namespace="shop",region="us-east-1",service="web"} 0.0385
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), pricing.HourlyCostMetric); err != nil {
		t.Error(err)
	}

	// Moving region replaces the series; a nil cost and Delete remove it.
	cost.Region = "us-west-2"
	if err := m.Set("shop", "web", "lb.portico.dev/aws", cost); err != nil {
		t.Fatal(err)
	}
	if err := m.Set("shop", "db", "lb.portico.dev/aws", nil); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m); n != 1 {
		t.Errorf("%d series after replacing one and clearing one, want 1", n)
	}
	if v := testutil.ToFloat64(m); v != 0.0385 {
		t.Errorf("remaining series = %v, want 0.0385", v)
	}
	m.Delete("shop", "web")
	if n := testutil.CollectAndCount(m); n != 0 {
		t.Errorf("%d series after Delete, want 0", n)
	}
	if err := m.Set("shop", "web", "c", &v1alpha1.CostStatus{Hourly: "lots"}); err == nil {
		t.Error("Set accepted a malformed hourly amount")
	}
}

// A JSON number from a price API either parses exactly, printing back to
// the same value, or is refused; never a panic or a rounded price.
func FuzzNumber(f *testing.F) {
	for _, s := range []string{"0.025", "5E-3", "1e400", "-0.01", "0.00000000001", "12", "1.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := pricing.ParseNumber(s)
		if err != nil {
			return
		}
		back, err := pricing.ParseNumber(pricing.FormatAmount(r))
		if err != nil || back.Cmp(r) != 0 {
			t.Fatalf("%q -> %s -> %v, %v", s, pricing.FormatAmount(r), back, err)
		}
	})
}
