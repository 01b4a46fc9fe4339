package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

// keptPricer answers like a pricing.Refresher whose price API just gave bad
// data: the last good price together with the reason.
type keptPricer struct {
	cost *lbv1.CostStatus
	err  error
}

func (p keptPricer) Price(string, providers.CostInputs) (*lbv1.CostStatus, error) {
	return p.cost, p.err
}

func TestPriceKeepsTheLastGoodPriceWithTheConditionFalse(t *testing.T) {
	good := &lbv1.CostStatus{Hourly: "0.0399", Monthly: "29.127", Currency: "USD", Source: "live:aws-price-list", Stale: true}
	for _, tc := range []struct {
		name        string
		pricer      keptPricer
		wantCost    string
		wantStatus  metav1.ConditionStatus
		wantReason  string
		wantMonthly string
	}{
		{"bad data after a good price", keptPricer{good, pricing.LiveErrorf(pricing.ReasonLivePriceMissing, "aws-price-list returned no price for nlcu")},
			"0.0399", metav1.ConditionFalse, pricing.ReasonLivePriceMissing, "29.127 USD"},
		{"bad data with nothing kept", keptPricer{nil, pricing.LiveErrorf(pricing.ReasonLivePriceCurrency, "EUR, not USD")},
			"", metav1.ConditionFalse, pricing.ReasonLivePriceCurrency, ""},
		{"good", keptPricer{good, nil}, "0.0399", metav1.ConditionTrue, pricing.ReasonPriced, "29.127 USD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			r := &ServiceReconciler{Pricer: tc.pricer, Recorder: rec}
			s := &lbv1.LoadBalancerStatus{Cost: &lbv1.CostStatus{Hourly: "1"}, MonthlyCost: "730 USD"}
			r.price(context.Background(), &corev1.Service{}, "lb.portico.dev/aws", &providers.Status{}, s)
			// A failure is an Event once, not again while it stays the same.
			r.price(context.Background(), &corev1.Service{}, "lb.portico.dev/aws", &providers.Status{}, s)
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
			got := ""
			if s.Cost != nil {
				got = s.Cost.Hourly
			}
			if got != tc.wantCost || s.MonthlyCost != tc.wantMonthly {
				t.Errorf("cost %q (%q), want %q (%q)", got, s.MonthlyCost, tc.wantCost, tc.wantMonthly)
			}
			c := meta.FindStatusCondition(s.Conditions, pricing.ConditionType)
			if c == nil || c.Status != tc.wantStatus || c.Reason != tc.wantReason {
				t.Errorf("condition %+v, want %s %s", c, tc.wantStatus, tc.wantReason)
			}
		})
	}
}
