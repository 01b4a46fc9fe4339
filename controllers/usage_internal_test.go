package controllers

import (
	"context"
	"errors"
	"math/big"
	"strings"
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
)

// scriptedUsage answers like a usage.Tracker.
type scriptedUsage struct {
	u   *providers.Usage
	err error
}

func (s scriptedUsage) Usage(providers.CostInputs) (*providers.Usage, error) { return s.u, s.err }

func nlcuHours(n int64, unit string) *providers.Usage {
	end := time.Date(2026, 11, 11, 10, 0, 0, 0, time.UTC)
	return &providers.Usage{Source: "cloudwatch:AWS/NetworkELB", MeasuredAt: end.Add(5 * time.Minute),
		LastDay: &providers.UsageWindow{Start: end.Add(-24 * time.Hour), End: end, Quantities: []providers.UsageQuantity{
			{Name: "nlcus", Unit: unit, Value: big.NewRat(n, 1)}}}}
}

func TestPriceWithUsage(t *testing.T) {
	cat, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	in := providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/web/1"}
	denied := errors.New("CloudWatch GetMetricData: AccessDenied")
	for _, tc := range []struct {
		name       string
		meter      scriptedUsage
		wantHourly string // fixed 0.0225; estimate 0.006; 48 NLCU-hours a day = 0.012 an hour
		wantUsage  bool
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"measured", scriptedUsage{nlcuHours(48, providers.UnitHours), nil}, "0.0345", true, metav1.ConditionTrue, usage.ReasonMeasured},
		{"metrics refused after a good reading: kept", scriptedUsage{nlcuHours(48, providers.UnitHours), denied}, "0.0345", true, metav1.ConditionFalse, usage.ReasonUnavailable},
		{"metrics refused with nothing kept: the estimate, not zero", scriptedUsage{nil, denied}, "0.0285", false, metav1.ConditionFalse, usage.ReasonUnavailable},
		{"not read yet", scriptedUsage{nil, &usage.Error{Reason: usage.ReasonPending, Message: "not read yet"}}, "0.0285", false, metav1.ConditionUnknown, usage.ReasonPending},
		{"a quantity the price list cannot price", scriptedUsage{nlcuHours(48, providers.UnitGB), nil}, "0.0285", false, metav1.ConditionFalse, pricing.ReasonUnitNotPriced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			r := &ServiceReconciler{Pricer: cat, Usage: tc.meter, Recorder: rec}
			s := &lbv1.LoadBalancerStatus{}
			st := &providers.Status{Cost: in}
			r.price(context.Background(), &corev1.Service{}, "lb.portico.dev/aws", st, s)
			r.price(context.Background(), &corev1.Service{}, "lb.portico.dev/aws", st, s)
			if st.Cost.Usage != nil {
				t.Errorf("the provider's cost inputs were changed")
			}
			if s.Cost == nil || s.Cost.Hourly != tc.wantHourly || s.Cost.Fixed != "0.0225" || (s.Cost.Usage != nil) != tc.wantUsage {
				t.Fatalf("cost %+v; want hourly %s, fixed 0.0225, usage %v", s.Cost, tc.wantHourly, tc.wantUsage)
			}
			if c := meta.FindStatusCondition(s.Conditions, pricing.ConditionType); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("priced condition %+v, want True", c)
			}
			c := meta.FindStatusCondition(s.Conditions, usage.ConditionType)
			if c == nil || c.Status != tc.wantStatus || c.Reason != tc.wantReason {
				t.Fatalf("usage condition %+v, want %s %s", c, tc.wantStatus, tc.wantReason)
			}
			var evs []string
			for len(rec.Events) > 0 {
				evs = append(evs, <-rec.Events)
			}
			if tc.wantStatus == metav1.ConditionFalse {
				if len(evs) != 1 || !strings.HasPrefix(evs[0], "Warning "+tc.wantReason+" ") {
					t.Errorf("events %q, want one Warning %s", evs, tc.wantReason)
				}
			} else if len(evs) != 0 {
				t.Errorf("events %q, want none", evs)
			}
		})
	}
}

// A kind without a meter has no UsageMeasured condition.
func TestPriceWithoutAMeteredKind(t *testing.T) {
	cat, _ := pricing.Default()
	r := &ServiceReconciler{Pricer: cat, Usage: scriptedUsage{}, Recorder: events.NewFakeRecorder(1)}
	s := &lbv1.LoadBalancerStatus{Conditions: []metav1.Condition{{Type: usage.ConditionType, Status: metav1.ConditionTrue, Reason: "Measured"}}}
	r.price(context.Background(), &corev1.Service{}, "lb.portico.dev/local", &providers.Status{Cost: providers.CostInputs{Kind: "local-address", Units: map[string]int{"addresses": 1}}}, s)
	if c := meta.FindStatusCondition(s.Conditions, usage.ConditionType); c != nil {
		t.Errorf("condition %+v, want none", c)
	}
}

// A load balancer younger than a day is priced at its usage over the hours
// it existed: 12 NLCU-hours in 3 hours is 0.024 an hour, not 0.003.
func TestPriceWithUsageOfAYoungLoadBalancer(t *testing.T) {
	cat, _ := pricing.Default()
	u := nlcuHours(12, providers.UnitHours)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(u.LastDay.End.Add(-150 * time.Minute))}}
	r := &ServiceReconciler{Pricer: cat, Usage: scriptedUsage{u, nil}, Recorder: events.NewFakeRecorder(1)}
	s := &lbv1.LoadBalancerStatus{}
	r.price(context.Background(), svc, "lb.portico.dev/aws", &providers.Status{Cost: providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: "x"}}, s)
	if s.Cost == nil || s.Cost.Usage == nil || s.Cost.Usage.Hourly != "0.024" || !s.Cost.Usage.LastDay.Start.Time.Equal(u.LastDay.End.Add(-3*time.Hour)) {
		t.Fatalf("cost %+v", s.Cost)
	}
}

// A price source that gives bad data keeps its last good price, with the
// error: the usage is still applied to it, and the usage is not blamed.
func TestPriceWithUsageAndAKeptPrice(t *testing.T) {
	cat, _ := pricing.Default()
	kept := keptUsagePricer{cat}
	r := &ServiceReconciler{Pricer: kept, Usage: scriptedUsage{nlcuHours(48, providers.UnitHours), nil}, Recorder: events.NewFakeRecorder(5)}
	s := &lbv1.LoadBalancerStatus{}
	r.price(context.Background(), &corev1.Service{}, "lb.portico.dev/aws", &providers.Status{Cost: providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: "x"}}, s)
	if s.Cost == nil || s.Cost.Usage == nil || s.Cost.Hourly != "0.0345" {
		t.Fatalf("cost %+v, want the kept price with the usage", s.Cost)
	}
	if c := meta.FindStatusCondition(s.Conditions, usage.ConditionType); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("usage condition %+v, want True", c)
	}
	if c := meta.FindStatusCondition(s.Conditions, pricing.ConditionType); c == nil || c.Reason != pricing.ReasonLivePriceMissing {
		t.Errorf("priced condition %+v, want False %s", c, pricing.ReasonLivePriceMissing)
	}
}

// keptUsagePricer prices like a Refresher whose source just gave bad
// data: a cost together with the error.
type keptUsagePricer struct{ cat *pricing.Catalog }

func (k keptUsagePricer) Price(class string, in providers.CostInputs) (*lbv1.CostStatus, error) {
	c, err := k.cat.Price(class, in)
	if err != nil {
		return nil, err
	}
	return c, pricing.LiveErrorf(pricing.ReasonLivePriceMissing, "no price for nlcu")
}
