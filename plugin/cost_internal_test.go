package plugin

import (
	"math/big"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
)

func TestBuildCostReport(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	lb := func(ns, name, class, hourly, currency, region string, age time.Duration) v1alpha1.LoadBalancer {
		l := v1alpha1.LoadBalancer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age))},
			Spec:       v1alpha1.LoadBalancerSpec{Class: class},
		}
		if hourly != "" {
			l.Status.Cost = &v1alpha1.CostStatus{Hourly: hourly, Currency: currency, Region: region}
		}
		return l
	}
	lbs := []v1alpha1.LoadBalancer{
		lb("a", "x", "lb.portico.dev/aws", "0.0225", "USD", "us-east-1", 90*time.Minute),
		lb("a", "y", "lb.portico.dev/local", "0.0015", "EUR", "", 40*time.Hour),
		lb("b", "z", "lb.portico.dev/aws", "0.0252", "USD", "eu-west-1", 20*time.Minute),
		lb("b", "w", "lb.portico.dev/gcp", "", "", "", time.Hour),
		lb("c", "v", "lb.portico.dev/gcp", "", "", "", time.Hour),
	}
	tests := []struct {
		by     string
		groups []CostGroup
		totals []CostGroup
	}{{
		by: byNamespace,
		groups: []CostGroup{
			// 1.5 h at 0.0225 = 0.03375; 40 h at 0.0015 = 0.06.
			{Key: "a", Currency: "EUR", LoadBalancers: 1, Hourly: "0.0015", Monthly: "1.095", Accrued: "0.06"},
			{Key: "a", Currency: "USD", LoadBalancers: 1, Hourly: "0.0225", Monthly: "16.425", Accrued: "0.03375"},
			// 1/3 h at 0.0252 = 0.0084; the unpriced one joins the row.
			{Key: "b", Currency: "USD", LoadBalancers: 2, Unpriced: 1, Hourly: "0.0252", Monthly: "18.396", Accrued: "0.0084"},
			{Key: "c", LoadBalancers: 1, Unpriced: 1, Hourly: "0", Monthly: "0", Accrued: "0"},
		},
		totals: []CostGroup{
			{Key: "TOTAL", Currency: "EUR", LoadBalancers: 3, Unpriced: 2, Hourly: "0.0015", Monthly: "1.095", Accrued: "0.06"},
			{Key: "TOTAL", Currency: "USD", LoadBalancers: 2, Hourly: "0.0477", Monthly: "34.821", Accrued: "0.04215"},
		},
	}, {
		by: byClass,
		groups: []CostGroup{
			{Key: "lb.portico.dev/aws", Currency: "USD", LoadBalancers: 2, Hourly: "0.0477", Monthly: "34.821", Accrued: "0.04215"},
			{Key: "lb.portico.dev/gcp", LoadBalancers: 2, Unpriced: 2, Hourly: "0", Monthly: "0", Accrued: "0"},
			{Key: "lb.portico.dev/local", Currency: "EUR", LoadBalancers: 1, Hourly: "0.0015", Monthly: "1.095", Accrued: "0.06"},
		},
	}, {
		by: byRegion,
		groups: []CostGroup{
			{Key: "", Currency: "EUR", LoadBalancers: 3, Unpriced: 2, Hourly: "0.0015", Monthly: "1.095", Accrued: "0.06"},
			{Key: "eu-west-1", Currency: "USD", LoadBalancers: 1, Hourly: "0.0252", Monthly: "18.396", Accrued: "0.0084"},
			{Key: "us-east-1", Currency: "USD", LoadBalancers: 1, Hourly: "0.0225", Monthly: "16.425", Accrued: "0.03375"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.by, func(t *testing.T) {
			r, err := buildCostReport(lbs, nil, tt.by, now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.groups, r.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			if tt.totals != nil {
				if diff := cmp.Diff(tt.totals, r.Totals); diff != "" {
					t.Errorf("totals (-want +got):\n%s", diff)
				}
			}
			if len(r.LoadBalancers) != len(lbs) {
				t.Errorf("%d lines for %d load balancers", len(r.LoadBalancers), len(lbs))
			}
		})
	}
}

func TestBuildCostReportRejectsMalformedStatus(t *testing.T) {
	lbs := []v1alpha1.LoadBalancer{{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "x"},
		Status: v1alpha1.LoadBalancerStatus{Cost: &v1alpha1.CostStatus{Hourly: "1.2e-3", Currency: "USD"}}}}
	if _, err := buildCostReport(lbs, nil, byNamespace, time.Now()); err == nil {
		t.Error("a float-formatted hourly cost was summed instead of reported")
	}
}

func TestAccruedSince(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := big.NewRat(225, 10000) // 0.0225
	if got := accruedSince(h, created, created.Add(730*time.Hour)); got.Cmp(big.NewRat(16425, 1000)) != 0 {
		t.Errorf("730 h accrued %s, want 16.425", got.FloatString(6))
	}
	if got := accruedSince(h, created, created.Add(-time.Hour)); got.Sign() != 0 {
		t.Errorf("a creation time in the future accrued %s", got.FloatString(6))
	}
	if got := accruedSince(h, time.Time{}, created); got.Sign() != 0 {
		t.Errorf("an unknown creation time accrued %s", got.FloatString(6))
	}
}

func TestCostOverPeriod(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	lb := func(hourly, fixed string, age time.Duration) *v1alpha1.LoadBalancer {
		return &v1alpha1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "x", CreationTimestamp: metav1.NewTime(now.Add(-age))},
			Status: v1alpha1.LoadBalancerStatus{Cost: &v1alpha1.CostStatus{Hourly: hourly, Fixed: fixed, Currency: "USD"}}}
	}
	for _, tc := range []struct {
		name, period      string
		lb                *v1alpha1.LoadBalancer
		fixed, use, total string
	}{
		// Created 6 h ago: 6 × 0.0225 fixed, 6 × 0.006 estimated NLCU.
		{"young, estimated usage", periodDay, lb("0.0285", "0.0225", 6*time.Hour), "0.135", "0.036", "0.171"},
		// 20 days and 12 hours of November.
		{"month to date", periodMonth, lb("0.0285", "0.0225", 90*24*time.Hour), "11.07", "2.952", "14.022"},
		// A cost written before fixed parts: all of it counts as fixed.
		{"no fixed part", periodDay, lb("0.0015", "", 48*time.Hour), "0.036", "0", "0.036"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, end := periodWindow(tc.period, now)
			pc, _, _, err := costOverPeriod(tc.lb, tc.period, start, end)
			if err != nil {
				t.Fatal(err)
			}
			if pc.Fixed != tc.fixed || pc.Usage != tc.use || pc.Total != tc.total || pc.Measured {
				t.Errorf("%+v, want fixed %s usage %s total %s, estimated", pc, tc.fixed, tc.use, tc.total)
			}
		})
	}
	start, end := periodWindow(periodDay, now)
	if _, _, _, err := costOverPeriod(lb("0.01", "0.02", time.Hour), periodDay, start, end); err == nil {
		t.Error("a fixed part above the hourly cost was accepted")
	}
}

// A month-to-date reading of a load balancer created this month starts at
// its creation, and still stands for the month.
func TestMeasuredPeriodOfALoadBalancerCreatedThisMonth(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	start, end := periodWindow(periodMonth, now)
	u := &v1alpha1.UsageCost{MeasuredAt: metav1.NewTime(now), MonthToDate: &v1alpha1.UsagePeriod{
		Start: metav1.NewTime(time.Date(2026, 11, 18, 9, 0, 0, 0, time.UTC)), End: metav1.NewTime(now.Truncate(time.Hour)), Amount: "1"}}
	if p, note := measuredPeriod(u, periodMonth, start, end); p == nil {
		t.Errorf("not measured: %s", note)
	}
	u.MonthToDate.Start = metav1.NewTime(time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC))
	if p, _ := measuredPeriod(u, periodMonth, start, end); p != nil {
		t.Error("last month's reading stood for this month")
	}
}
