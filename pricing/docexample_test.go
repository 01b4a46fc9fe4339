package pricing_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

// The per-GB ConfigMap example in docs/cost.md is valid price data and
// prices a GCP load balancer's measured data.
func TestDocsPerGBExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/cost.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(products:\n.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no per-GB example in docs/cost.md")
	}
	f, err := pricing.Parse(append([]byte("asOf: \"2026-11-30\"\ncurrency: USD\n"), m[1]...), "configmap:portico-system/portico-prices")
	if err != nil {
		t.Fatalf("the example is not valid price data: %v", err)
	}
	base, _ := pricing.Embedded()
	cat, err := pricing.Load(base, f)
	if err != nil {
		t.Fatal(err)
	}
	usage := &providers.Usage{Source: "cloud-monitoring", MeasuredAt: measuredAt,
		LastDay: &providers.UsageWindow{Start: dayStart, End: dayEnd, Quantities: []providers.UsageQuantity{{Name: "dataProcessed", Unit: providers.UnitGB, Value: rat("120")}}}}
	cost, err := cat.Price("lb.portico.dev/gcp", providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "europe-west1", Tier: "PREMIUM",
		Units: map[string]int{"forwardingRules": 1, "addresses": 1, "backendServices": 1, "healthChecks": 1}, Usage: usage})
	if err != nil {
		t.Fatalf("Price: %v", err)
	}
	// 120 GB × 0.008 = 0.96 a day = 0.04 an hour, plus the first-five block.
	if cost.Usage.LastDay.Amount != "0.96" || cost.Hourly != "0.065" || cost.Fixed != "0.025" {
		t.Errorf("cost %+v usage %+v", cost, cost.Usage)
	}
}
