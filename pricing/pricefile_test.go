package pricing_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

func priceConfigMap(data string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "portico-prices"},
		Data:       map[string]string{pricing.ConfigMapKey: data},
	}
}

const onPremPrices = `
asOf: "2026-11-01"
currency: EUR
products:
- kind: local-address
  prices:
  - regions: ["*"]
    units:
      addresses: {item: address, hourly: "0.0015"}
- kind: aws-nlb
  sourceURL: https://example.com/our-negotiated-rates
  prices:
  - regions: [us-east-1]
    hourly: "0.02"
    hourlyItem: nlb-hour
    units:
      nlcus: {item: nlcu, hourly: "0.005", estimate: 2}
      listeners: {item: listener, hourly: "0"}
  - regions: [il-central-1]
    hourly: "0.0264"
    units:
      listeners: {hourly: "0"}
`

func TestConfigMapOverrides(t *testing.T) {
	override, err := pricing.ParseConfigMap(priceConfigMap(onPremPrices))
	if err != nil {
		t.Fatalf("ParseConfigMap: %v", err)
	}
	embedded, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pricing.Load(embedded, override)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tests := []struct {
		name                              string
		in                                providers.CostInputs
		hourly, monthly, currency, source string
	}{
		{"on-prem address price replaces the free default", providers.CostInputs{Kind: "local-address", Units: map[string]int{"addresses": 2}},
			"0.003", "2.19", "EUR", "configmap:portico-system/portico-prices"},
		{"overridden region", providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Units: map[string]int{"listeners": 1}},
			"0.03", "21.9", "EUR", "configmap:portico-system/portico-prices"},
		{"added region", providers.CostInputs{Kind: "aws-nlb", Region: "il-central-1"},
			"0.0264", "19.272", "EUR", "configmap:portico-system/portico-prices"},
		{"regions the override does not name keep the embedded price", providers.CostInputs{Kind: "aws-nlb", Region: "us-west-2"},
			"0.0285", "20.805", "USD", "embedded:aws-2026-11-21"},
		{"products the override does not name keep the embedded price", providers.CostInputs{Kind: "memory"},
			"0", "0", "USD", "embedded:local-2026-11-21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Price("c", tt.in)
			if err != nil {
				t.Fatalf("Price: %v", err)
			}
			if got.Hourly != tt.hourly || got.Monthly != tt.monthly || got.Currency != tt.currency || got.Source != tt.source {
				t.Errorf("got %s/h %s/month %s from %s, want %s/h %s/month %s from %s",
					got.Hourly, got.Monthly, got.Currency, got.Source, tt.hourly, tt.monthly, tt.currency, tt.source)
			}
			assertConsistent(t, got)
		})
	}
}

func TestParseRejectsBadPriceData(t *testing.T) {
	const head = "asOf: \"2026-11-01\"\ncurrency: USD\nproducts:\n"
	tests := []struct {
		name, data, wantInMessage string
	}{
		{"not yaml", "{{{", "yaml"},
		{"unknown field (typo)", head + "- kind: x\n  prices:\n  - regions: [a]\n    hourley: \"1\"\n", "hourley"},
		{"no date", "currency: USD\nproducts:\n- kind: x\n  prices:\n  - regions: [a]\n    hourly: \"1\"\n", "asOf"},
		{"bad date", "asOf: yesterday\ncurrency: USD\nproducts:\n- kind: x\n  prices:\n  - regions: [a]\n    hourly: \"1\"\n", "asOf"},
		{"bad currency", "asOf: \"2026-11-01\"\ncurrency: dollars\nproducts:\n- kind: x\n  prices:\n  - regions: [a]\n    hourly: \"1\"\n", "currency"},
		{"no products", "asOf: \"2026-11-01\"\ncurrency: USD\n", "no products"},
		{"no prices", head + "- kind: x\n", "no prices"},
		{"no regions", head + "- kind: x\n  prices:\n  - hourly: \"1\"\n", "no regions"},
		{"region twice", head + "- kind: x\n  prices:\n  - regions: [a, a]\n    hourly: \"1\"\n", "twice"},
		{"nothing priced", head + "- kind: x\n  prices:\n  - regions: [a]\n", "neither"},
		{"negative price", head + "- kind: x\n  prices:\n  - regions: [a]\n    hourly: \"-1\"\n", "hourly"},
		{"float exponent", head + "- kind: x\n  prices:\n  - regions: [a]\n    hourly: \"1e-3\"\n", "hourly"},
		{"too precise", head + "- kind: x\n  prices:\n  - regions: [a]\n    hourly: \"0.00000000001\"\n", "hourly"},
		{"unit without a price is not free", head + "- kind: x\n  prices:\n  - regions: [a]\n    units:\n      rules: {item: rule}\n", "units.rules"},
		{"block without its price", head + "- kind: x\n  prices:\n  - regions: [a]\n    units:\n      rules: {hourly: \"0.01\", firstBlock: 5}\n", "firstBlockHourly"},
		{"block price without a block", head + "- kind: x\n  prices:\n  - regions: [a]\n    units:\n      rules: {hourly: \"0.01\", firstBlockHourly: \"0.02\"}\n", "firstBlock"},
		{"unknown allocation", head + "- kind: x\n  prices:\n  - regions: [a]\n    units:\n      rules: {hourly: \"0.01\", firstBlock: 5, firstBlockHourly: \"0.02\", allocation: fair}\n", "allocation"},
		{"negative estimate", head + "- kind: x\n  prices:\n  - regions: [a]\n    units:\n      n: {hourly: \"0.01\", estimate: -1}\n", "estimate"},
		{"clashing breakdown items", head + "- kind: x\n  prices:\n  - regions: [a]\n    units:\n      a: {item: same, hourly: \"0\"}\n      b: {item: same, hourly: \"0\"}\n", "already used"},
		{"bad kind", head + "- kind: \"AWS NLB\"\n  prices:\n  - regions: [a]\n    hourly: \"1\"\n", "kind"},
		{"huge", head + strings.Repeat("#", 1<<20), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := pricing.Parse([]byte(tt.data), "test")
			if err == nil {
				t.Fatalf("Parse accepted %q as %+v", tt.data, f)
			}
			var pe *pricing.Error
			if !errors.As(err, &pe) || pe.Reason != pricing.ReasonPriceDataInvalid {
				t.Fatalf("error %v (%T), want a *pricing.Error with reason PriceDataInvalid", err, err)
			}
			if !strings.Contains(err.Error(), tt.wantInMessage) {
				t.Errorf("message %q does not point at %q", err.Error(), tt.wantInMessage)
			}
		})
	}
}

func TestParseConfigMapWithoutKey(t *testing.T) {
	cm := priceConfigMap("")
	delete(cm.Data, pricing.ConfigMapKey)
	cm.Data["prices.yml"] = onPremPrices
	_, err := pricing.ParseConfigMap(cm)
	var pe *pricing.Error
	if !errors.As(err, &pe) || pe.Reason != pricing.ReasonPriceDataInvalid {
		t.Fatalf("error %v, want PriceDataInvalid", err)
	}
}

func TestLoadRejectsTwoBaseFilesPricingTheSameRegion(t *testing.T) {
	a, err := pricing.Parse([]byte(onPremPrices), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := pricing.Parse([]byte(onPremPrices), "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pricing.Load([]*pricing.File{a, b}); err == nil {
		t.Fatal("Load accepted two base files that price the same regions")
	}
	if _, err := pricing.Load([]*pricing.File{a}, b); err != nil {
		t.Fatalf("an override of the same regions: %v", err)
	}
}

func TestMarginalAllocation(t *testing.T) {
	f, err := pricing.Parse([]byte(`
asOf: "2026-11-01"
currency: USD
products:
- kind: gcp-forwarding-rule
  prices:
  - regions: [us-central1]
    units:
      forwardingRules: {item: forwarding-rules, firstBlock: 5, firstBlockHourly: "0.025", hourly: "0.01", allocation: marginal}
`), "configmap:x/y")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pricing.Load(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Price("c", providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "us-central1", Units: map[string]int{"forwardingRules": 2}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Hourly != "0.02" || len(got.Breakdown) != 1 || got.Breakdown[0].Item != "forwarding-rules" {
		t.Errorf("marginal allocation priced %+v, want two rules at 0.01", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(onPremPrices), "aws-nlb", "us-east-1", "nlcus", 3)
	f.Add([]byte("asOf: \"2026-11-01\"\ncurrency: USD\nproducts:\n- kind: x\n  prices:\n  - regions: [\"*\"]\n    units:\n      r: {hourly: \"0.1\", firstBlock: 2, firstBlockHourly: \"0.3\"}\n"), "x", "", "r", 5)
	f.Add([]byte("{}"), "", "", "", 0)
	f.Fuzz(func(t *testing.T, data []byte, kind, region, unit string, n int) {
		file, err := pricing.Parse(data, "fuzz")
		if err != nil {
			var pe *pricing.Error
			if !errors.As(err, &pe) || pe.Reason != pricing.ReasonPriceDataInvalid {
				t.Fatalf("Parse error %v is not PriceDataInvalid", err)
			}
			return
		}
		c, err := pricing.Load([]*pricing.File{file})
		if err != nil {
			t.Fatalf("Load rejected a file Parse accepted: %v", err)
		}
		got, err := c.Price("fuzz", providers.CostInputs{Kind: kind, Region: region, Units: map[string]int{unit: n}})
		if err != nil {
			var pe *pricing.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Price error %v is a %T", err, err)
			}
			return
		}
		if got.Currency != file.Currency {
			t.Errorf("currency %s, file says %s", got.Currency, file.Currency)
		}
		assertConsistent(t, got)
	})
}
