package pricing_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

// scriptedSource answers Fetch with whatever the test last set: the
// Refresher's contract with a source, without any wire protocol (the
// sources' own tests speak each API's wire format).
type scriptedSource struct {
	mu    sync.Mutex
	quote *pricing.Quote
	err   error
	calls int
}

func (s *scriptedSource) Kind() string { return "aws-nlb" }
func (s *scriptedSource) Name() string { return "scripted" }
func (s *scriptedSource) Fetch(_ context.Context, region, currency string) (*pricing.Quote, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	q := *s.quote
	q.Region = region
	return &q, nil
}

func (s *scriptedSource) set(q *pricing.Quote, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quote, s.err = q, err
}

func nlbQuote(hour string) *pricing.Quote {
	return &pricing.Quote{Currency: "USD", Hourly: map[string]string{
		pricing.QuoteFixed: hour, "nlcus": "0.006", "publicIPs": "0.005",
	}}
}

type refresherRig struct {
	src  *scriptedSource
	r    *pricing.Refresher
	live *pricing.Live
	now  time.Time
}

func newRefresherRig(t *testing.T) *refresherRig {
	t.Helper()
	base, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	live, err := pricing.NewLive(base)
	if err != nil {
		t.Fatal(err)
	}
	rig := &refresherRig{src: &scriptedSource{}, live: live, now: time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)}
	rig.r, err = pricing.NewRefresher(live, pricing.RefresherOptions{
		Sources:    []pricing.Source{rig.src},
		Interval:   time.Hour,
		StaleAfter: 3 * time.Hour,
		Now:        func() time.Time { return rig.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return rig
}

// ap-southeast-6 (Auckland) is not in the embedded catalog.
var nlbInputs = providers.CostInputs{Kind: "aws-nlb", Region: "ap-southeast-6", Units: map[string]int{"publicIPs": 2, "listeners": 1}}

// price asks for a price, then runs the refresh a reconcile's demand
// triggers (Run does this in the operator), then asks again.
func (rig *refresherRig) priceAfterRefresh(t *testing.T, in providers.CostInputs) (string, error) {
	t.Helper()
	_, _ = rig.r.Price("lb.portico.dev/aws", in)
	rig.r.Refresh(context.Background(), false)
	return rig.price(t, in)
}

func (rig *refresherRig) price(t *testing.T, in providers.CostInputs) (string, error) {
	t.Helper()
	cost, err := rig.r.Price("lb.portico.dev/aws", in)
	if cost == nil {
		return "", err
	}
	s := fmt.Sprintf("%s %s %s", cost.Hourly, cost.Currency, cost.Source)
	if cost.FetchedAt != nil {
		s += " fetched=" + cost.FetchedAt.UTC().Format("15:04")
	}
	if cost.Stale {
		s += " stale"
	}
	if cost.SourceError != "" {
		s += " sourceError=" + cost.SourceError
	}
	// Never a zero from a source that said nothing.
	if cost.Hourly == "0" {
		t.Errorf("cost of zero: %+v", cost)
	}
	return s, err
}

func reasonOf(err error) string {
	var pe *pricing.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestRefresherPricesARegionTheEmbeddedCatalogLacks(t *testing.T) {
	rig := newRefresherRig(t)
	rig.src.set(nlbQuote("0.0239"), nil)
	got, err := rig.priceAfterRefresh(t, nlbInputs)
	// 0.0239 + 1 NLCU estimate 0.006 + 2 × 0.005
	if want := "0.0399 USD live:scripted fetched=01:00"; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
}

func TestRefresherFallsBackToEmbeddedWhenTheAPIIsUnreachable(t *testing.T) {
	rig := newRefresherRig(t)
	rig.src.set(nil, errors.New("dial tcp: connection refused"))
	in := nlbInputs
	in.Region = "us-east-1"
	got, err := rig.priceAfterRefresh(t, in)
	if want := "0.0385 USD embedded:aws-2026-11-21 sourceError=scripted: dial tcp: connection refused"; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	t.Run("a region without embedded prices is RegionNotPriced, saying why", func(t *testing.T) {
		got, err := rig.priceAfterRefresh(t, providers.CostInputs{Kind: "aws-nlb", Region: "xx-nowhere-1"})
		if got != "" || reasonOf(err) != pricing.ReasonRegionNotPriced || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("got %q, %v", got, err)
		}
	})
}

func TestRefresherBadDataKeepsTheLastGoodPrice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		quote  *pricing.Quote
		reason string
	}{
		{"no price for a SKU", &pricing.Quote{Currency: "USD", Hourly: map[string]string{pricing.QuoteFixed: "0.0239", "publicIPs": "0.005"}}, pricing.ReasonLivePriceMissing},
		{"a zero price for a charged SKU", nlbQuote("0"), pricing.ReasonLivePriceMissing},
		{"another currency", &pricing.Quote{Currency: "EUR", Hourly: nlbQuote("0.0239").Hourly}, pricing.ReasonLivePriceCurrency},
		{"malformed amount", nlbQuote("2.39e-2"), pricing.ReasonLivePriceInvalid},
		{"negative amount", nlbQuote("-0.0239"), pricing.ReasonLivePriceInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("with nothing good before: no cost, the reason", func(t *testing.T) {
				rig := newRefresherRig(t)
				rig.src.set(tc.quote, nil)
				got, err := rig.priceAfterRefresh(t, nlbInputs)
				if got != "" || reasonOf(err) != tc.reason {
					t.Errorf("got %q, %v; want no cost and %s", got, err, tc.reason)
				}
				cond := pricing.Condition(nil, err, 1)
				if cond.Status != metav1.ConditionFalse || cond.Reason != tc.reason {
					t.Errorf("condition %+v", cond)
				}
			})
			t.Run("after a good price: kept, condition False, stale after the age", func(t *testing.T) {
				rig := newRefresherRig(t)
				rig.src.set(nlbQuote("0.0239"), nil)
				if _, err := rig.priceAfterRefresh(t, nlbInputs); err != nil {
					t.Fatal(err)
				}
				rig.now = rig.now.Add(time.Hour)
				rig.src.set(tc.quote, nil)
				got, err := rig.priceAfterRefresh(t, nlbInputs)
				if !strings.HasPrefix(got, "0.0399 USD live:scripted fetched=01:00 sourceError=") || reasonOf(err) != tc.reason {
					t.Errorf("got %q, %v; want the 01:00 price kept and %s", got, err, tc.reason)
				}
				cost, _ := rig.r.Price("lb.portico.dev/aws", nlbInputs)
				cond := pricing.Condition(cost, err, 1)
				if cond.Status != metav1.ConditionFalse || cond.Reason != tc.reason || !strings.Contains(cond.Message, "keeping the last good price") {
					t.Errorf("condition %+v", cond)
				}
				rig.now = rig.now.Add(3 * time.Hour)
				got, _ = rig.price(t, nlbInputs)
				if !strings.Contains(got, "fetched=01:00 stale") {
					t.Errorf("4 h after the last good fetch with a 3 h stale age: %q, want stale", got)
				}
			})
		})
	}
}

func TestRefresherKeepsCachedPricesWhileTheAPIIsDownAndMarksThemStale(t *testing.T) {
	rig := newRefresherRig(t)
	rig.src.set(nlbQuote("0.0239"), nil)
	if _, err := rig.priceAfterRefresh(t, nlbInputs); err != nil {
		t.Fatal(err)
	}
	rig.src.set(nil, errors.New("AccessDeniedException: not authorized to perform pricing:GetProducts"))
	rig.now = rig.now.Add(2 * time.Hour)
	got, err := rig.priceAfterRefresh(t, nlbInputs)
	if err != nil || got != "0.0399 USD live:scripted fetched=01:00 sourceError=scripted: AccessDeniedException: not authorized to perform pricing:GetProducts" {
		t.Errorf("2 h later: %q, %v", got, err)
	}
	rig.now = rig.now.Add(2 * time.Hour)
	if got, _ := rig.price(t, nlbInputs); !strings.Contains(got, " stale ") {
		t.Errorf("4 h later: %q, want stale", got)
	}
	rig.src.set(nlbQuote("0.024"), nil)
	if got, err := rig.priceAfterRefresh(t, nlbInputs); err != nil || got != "0.04 USD live:scripted fetched=05:00" {
		t.Errorf("after the API answers again: %q, %v", got, err)
	}
}

func TestRefresherConfigMapOverridesLivePrices(t *testing.T) {
	rig := newRefresherRig(t)
	rig.src.set(nlbQuote("0.0239"), nil)
	cm := priceConfigMap(`asOf: "2026-11-01"
currency: USD
products:
- kind: aws-nlb
  prices:
  - regions: [ap-southeast-6]
    hourly: "0.02"
    units:
      nlcus: {hourly: "0.005", estimate: 1}
      publicIPs: {hourly: "0.004"}
      listeners: {hourly: "0"}
`)
	if err := rig.live.SetOverride(cm); err != nil {
		t.Fatal(err)
	}
	got, err := rig.priceAfterRefresh(t, nlbInputs)
	if want := "0.033 USD configmap:portico-system/portico-prices"; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if err := rig.live.SetOverride((*corev1.ConfigMap)(nil)); err != nil {
		t.Fatal(err)
	}
	if got, err := rig.priceAfterRefresh(t, nlbInputs); err != nil || !strings.HasPrefix(got, "0.0399 USD live:scripted") {
		t.Errorf("without the ConfigMap: %q, %v", got, err)
	}
}

func TestRefresherRunFetchesNewDemandAtOnce(t *testing.T) {
	rig := newRefresherRig(t)
	rig.src.set(nlbQuote("0.0239"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rig.r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := rig.price(t, nlbInputs)
		if strings.Contains(got, "live:scripted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run never fetched the demanded region; last %q", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
