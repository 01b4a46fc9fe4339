package pricing_test

import (
	"errors"
	"math/big"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

func defaultCatalog(t *testing.T) *pricing.Catalog {
	t.Helper()
	c, err := pricing.Default()
	if err != nil {
		t.Fatalf("loading embedded prices: %v", err)
	}
	return c
}

func TestPriceEmbedded(t *testing.T) {
	c := defaultCatalog(t)
	tests := []struct {
		name  string
		in    providers.CostInputs
		class string
		want  *v1alpha1.CostStatus
	}{{
		name: "aws nlb in us-east-1 with the NLCU estimate and two public IPv4 addresses",
		in:   providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Units: map[string]int{"listeners": 2, "targetGroups": 2, "targets": 3, "publicIPs": 2}},
		want: &v1alpha1.CostStatus{
			Hourly: "0.0385", Monthly: "28.105", Currency: "USD", Source: "embedded:aws-2026-11-21", Region: "us-east-1", Basis: "documented", Fixed: "0.0325",
			Breakdown: []v1alpha1.CostItem{
				{Item: "nlb-hour", Quantity: 1, Hourly: "0.0225"},
				{Item: "listener", Quantity: 2, Hourly: "0"},
				{Item: "nlcu-estimate", Quantity: 1, Hourly: "0.006"},
				{Item: "public-ipv4", Quantity: 2, Hourly: "0.01"},
				{Item: "target-group", Quantity: 2, Hourly: "0"},
				{Item: "target", Quantity: 3, Hourly: "0"},
			},
		},
	}, {
		name: "aws nlb reporting measured NLCUs replaces the estimate",
		in:   providers.CostInputs{Kind: "aws-nlb", Region: "eu-central-1", Units: map[string]int{"nlcus": 4}},
		want: &v1alpha1.CostStatus{
			Hourly: "0.051", Monthly: "37.23", Currency: "USD", Source: "embedded:aws-2026-11-21", Region: "eu-central-1", Basis: "documented", Fixed: "0.051",
			Breakdown: []v1alpha1.CostItem{
				{Item: "nlb-hour", Quantity: 1, Hourly: "0.027"},
				{Item: "nlcu", Quantity: 4, Hourly: "0.024"},
			},
		},
	}, {
		name: "gcp: up to five rules cost the first-five block",
		in:   providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "us-central1", Tier: "PREMIUM", Units: map[string]int{"forwardingRules": 2, "addresses": 2}},
		want: &v1alpha1.CostStatus{
			Hourly: "0.025", Monthly: "18.25", Currency: "USD", Source: "embedded:gcp-2026-11-21", Region: "us-central1", Basis: "documented", Fixed: "0.025",
			Breakdown: []v1alpha1.CostItem{
				{Item: "address", Quantity: 2, Hourly: "0"},
				{Item: "forwarding-rules-first-5", Quantity: 2, Hourly: "0.025"},
			},
		},
	}, {
		name: "aws nlb as the aws provider reports it: no units, so the NLB hour and the NLCU estimate",
		in:   providers.CostInputs{Kind: "aws-nlb", Region: "us-east-2"},
		want: &v1alpha1.CostStatus{
			Hourly: "0.0285", Monthly: "20.805", Currency: "USD", Source: "embedded:aws-2026-11-21", Region: "us-east-2", Basis: "documented", Fixed: "0.0225",
			Breakdown: []v1alpha1.CostItem{
				{Item: "nlb-hour", Quantity: 1, Hourly: "0.0225"},
				{Item: "nlcu-estimate", Quantity: 1, Hourly: "0.006"},
			},
		},
	}, {
		name: "gcp as the gcp provider reports it: tier PREMIUM falls back to the tier-less entry",
		in:   providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "us-east4", Tier: "PREMIUM", Units: map[string]int{"forwardingRules": 2, "backendServices": 1, "healthChecks": 1}},
		want: &v1alpha1.CostStatus{
			Hourly: "0.025", Monthly: "18.25", Currency: "USD", Source: "embedded:gcp-2026-11-21", Region: "us-east4", Basis: "documented", Fixed: "0.025",
			Breakdown: []v1alpha1.CostItem{
				{Item: "backend-service", Quantity: 1, Hourly: "0"},
				{Item: "forwarding-rules-first-5", Quantity: 2, Hourly: "0.025"},
				{Item: "health-check", Quantity: 1, Hourly: "0"},
			},
		},
	}, {
		name: "gcp: rules beyond five cost the additional price each",
		in:   providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "europe-west1", Units: map[string]int{"forwardingRules": 8}},
		want: &v1alpha1.CostStatus{
			Hourly: "0.055", Monthly: "40.15", Currency: "USD", Source: "embedded:gcp-2026-11-21", Region: "europe-west1", Basis: "documented", Fixed: "0.055",
			Breakdown: []v1alpha1.CostItem{
				{Item: "forwarding-rules-first-5", Quantity: 5, Hourly: "0.025"},
				{Item: "forwarding-rules-additional", Quantity: 3, Hourly: "0.03"},
			},
		},
	}, {
		name: "azure standard lb: rules and a public IP",
		in:   providers.CostInputs{Kind: "azure-standard-lb", Region: "westeurope", Units: map[string]int{"rules": 6, "publicIPs": 1, "probes": 2}},
		want: &v1alpha1.CostStatus{
			Hourly: "0.04", Monthly: "29.2", Currency: "USD", Source: "embedded:azure-2026-11-21", Region: "westeurope", Basis: "documented", Fixed: "0.04",
			Breakdown: []v1alpha1.CostItem{
				{Item: "probe", Quantity: 2, Hourly: "0"},
				{Item: "public-ip", Quantity: 1, Hourly: "0.005"},
				{Item: "lb-rules-first-5", Quantity: 5, Hourly: "0.025"},
				{Item: "lb-rules-additional", Quantity: 1, Hourly: "0.01"},
			},
		},
	}, {
		name: "local addresses are free in any region without an on-prem price",
		in:   providers.CostInputs{Kind: "local-address", Units: map[string]int{"addresses": 3}},
		want: &v1alpha1.CostStatus{
			Hourly: "0", Monthly: "0", Currency: "USD", Source: "embedded:local-2026-11-21", Basis: "documented", Fixed: "0",
			Breakdown: []v1alpha1.CostItem{{Item: "address", Quantity: 3, Hourly: "0"}},
		},
	}, {
		name: "memory backend",
		in:   providers.CostInputs{Kind: "memory", Units: map[string]int{"listeners": 1, "targets": 0}},
		want: &v1alpha1.CostStatus{
			Hourly: "0", Monthly: "0", Currency: "USD", Source: "embedded:local-2026-11-21", Basis: "documented", Fixed: "0",
			Breakdown: []v1alpha1.CostItem{{Item: "listener", Quantity: 1, Hourly: "0"}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Price("lb.portico.dev/test", tt.in)
			if err != nil {
				t.Fatalf("Price: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Price (-want +got):\n%s", diff)
			}
			assertConsistent(t, got)
		})
	}
}

// assertConsistent checks the invariants every priced status keeps: Hourly
// is the exact sum of the breakdown and Monthly is 730 times Hourly.
func assertConsistent(t *testing.T, s *v1alpha1.CostStatus) {
	t.Helper()
	sum := new(big.Rat)
	for _, it := range s.Breakdown {
		h, err := pricing.ParseAmount(it.Hourly)
		if err != nil {
			t.Fatalf("breakdown %s: %v", it.Item, err)
		}
		sum.Add(sum, h)
	}
	hourly, err := pricing.ParseAmount(s.Hourly)
	if err != nil {
		t.Fatalf("hourly: %v", err)
	}
	if hourly.Cmp(sum) != 0 {
		t.Errorf("hourly %s is not the breakdown's sum %s", s.Hourly, sum.FloatString(10))
	}
	monthly, err := pricing.ParseAmount(s.Monthly)
	if err != nil {
		t.Fatalf("monthly: %v", err)
	}
	if want := new(big.Rat).Mul(hourly, big.NewRat(730, 1)); monthly.Cmp(want) != 0 {
		t.Errorf("monthly %s, want %s", s.Monthly, want.FloatString(10))
	}
}

func TestPriceErrors(t *testing.T) {
	c := defaultCatalog(t)
	tests := []struct {
		name   string
		in     providers.CostInputs
		reason string
	}{
		{"unknown region", providers.CostInputs{Kind: "aws-nlb", Region: "xx-nowhere-1"}, pricing.ReasonRegionNotPriced},
		{"no region for a regional product", providers.CostInputs{Kind: "gcp-forwarding-rule", Units: map[string]int{"forwardingRules": 1}}, pricing.ReasonRegionNotPriced},
		{"unknown product", providers.CostInputs{Kind: "oci-nlb", Region: "us-east-1"}, pricing.ReasonProductNotPriced},
		{"no cost inputs at all", providers.CostInputs{}, pricing.ReasonCostInputsInvalid},
		{"negative count", providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Units: map[string]int{"listeners": -1}}, pricing.ReasonCostInputsInvalid},
		{"absurd count", providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Units: map[string]int{"listeners": 1 << 40}}, pricing.ReasonCostInputsInvalid},
		{"unit the price list lacks", providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Units: map[string]int{"elasticIPs": 2}}, pricing.ReasonUnitNotPriced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Price("lb.portico.dev/test", tt.in)
			if err == nil {
				t.Fatalf("Price = %+v, want an error with reason %s", got, tt.reason)
			}
			var pe *pricing.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *pricing.Error", err, err)
			}
			if pe.Reason != tt.reason {
				t.Errorf("reason %s (%v), want %s", pe.Reason, err, tt.reason)
			}
			if got != nil {
				t.Errorf("got a cost %+v alongside the error", got)
			}
		})
	}
}

func TestUnpricedUnitWithZeroCountIsIgnored(t *testing.T) {
	got, err := defaultCatalog(t).Price("c", providers.CostInputs{Kind: "aws-nlb", Region: "us-west-2", Units: map[string]int{"elasticIPs": 0}})
	if err != nil {
		t.Fatalf("Price: %v", err)
	}
	if got.Hourly != "0.0285" {
		t.Errorf("hourly %s, want 0.0285 (NLB hour plus one estimated NLCU)", got.Hourly)
	}
}

func TestEmbeddedFilesAreDatedAndSourced(t *testing.T) {
	files, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		if f.AsOf == "" || f.Currency != "USD" {
			t.Errorf("%s: asOf %q currency %q", f.Source(), f.AsOf, f.Currency)
		}
		for _, p := range f.Products {
			kinds[p.Kind] = true
			cloud := p.Kind != "local-address" && p.Kind != "memory"
			if cloud && p.SourceURL == "" {
				t.Errorf("%s: product %s has no sourceURL", f.Source(), p.Kind)
			}
		}
	}
	for _, k := range []string{"aws-nlb", "gcp-forwarding-rule", "azure-standard-lb", "local-address", "memory"} {
		if !kinds[k] {
			t.Errorf("embedded data does not price %s", k)
		}
	}
}
