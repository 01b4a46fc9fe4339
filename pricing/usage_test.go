package pricing_test

import (
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

func rat(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return r
}

var (
	measuredAt = time.Date(2026, 11, 11, 10, 7, 30, 0, time.UTC)
	dayEnd     = time.Date(2026, 11, 11, 10, 0, 0, 0, time.UTC)
	dayStart   = dayEnd.Add(-24 * time.Hour)
	monthStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

// nlbUsage is what the CloudWatch meter reports for an NLB: NLCU-hours
// (priced) and processed GB (billed through NLCUs).
func nlbUsage(dayNLCU, dayGB, monthNLCU, monthGB string) *providers.Usage {
	return &providers.Usage{
		Source: "cloudwatch:AWS/NetworkELB", MeasuredAt: measuredAt,
		LastDay: &providers.UsageWindow{Start: dayStart, End: dayEnd, Quantities: []providers.UsageQuantity{
			{Name: "nlcus", Unit: providers.UnitHours, Value: rat(dayNLCU)},
			{Name: "processedBytes", Unit: providers.UnitGB, Value: rat(dayGB), Included: true},
		}},
		MonthToDate: &providers.UsageWindow{Start: monthStart, End: dayEnd, Quantities: []providers.UsageQuantity{
			{Name: "nlcus", Unit: providers.UnitHours, Value: rat(monthNLCU)},
			{Name: "processedBytes", Unit: providers.UnitGB, Value: rat(monthGB), Included: true},
		}},
	}
}

func period(start, end time.Time, amount string, items ...v1alpha1.UsageItem) *v1alpha1.UsagePeriod {
	return &v1alpha1.UsagePeriod{Start: metav1.NewTime(start), End: metav1.NewTime(end), Amount: amount, Items: items}
}

func TestPriceUsage(t *testing.T) {
	c := defaultCatalog(t)
	tests := []struct {
		name string
		in   providers.CostInputs
		want *v1alpha1.CostStatus
	}{{
		name: "measured NLCU-hours replace the one-NLCU estimate; the hourly rate is the last day's average",
		in:   providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Units: map[string]int{"publicIPs": 1}, Usage: nlbUsage("36", "1.5", "366", "20.25")},
		want: &v1alpha1.CostStatus{
			// fixed 0.0225 + 0.005; usage 36 NLCU-hours × 0.006 = 0.216 a day, 0.009 an hour
			Hourly: "0.0365", Monthly: "26.645", Currency: "USD", Source: "embedded:aws-2026-11-21", Region: "us-east-1", Basis: "documented",
			Breakdown: []v1alpha1.CostItem{{Item: "nlb-hour", Quantity: 1, Hourly: "0.0225"}, {Item: "public-ipv4", Quantity: 1, Hourly: "0.005"}},
			Fixed:     "0.0275",
			Usage: &v1alpha1.UsageCost{
				Source: "cloudwatch:AWS/NetworkELB", MeasuredAt: metav1.NewTime(measuredAt), Hourly: "0.009",
				LastDay: period(dayStart, dayEnd, "0.216",
					v1alpha1.UsageItem{Item: "nlcu", Unit: "nlcu-hours", Quantity: "36", Amount: "0.216"},
					v1alpha1.UsageItem{Item: "processed-bytes", Unit: "GB", Quantity: "1.5"}),
				MonthToDate: period(monthStart, dayEnd, "2.196",
					v1alpha1.UsageItem{Item: "nlcu", Unit: "nlcu-hours", Quantity: "366", Amount: "2.196"},
					v1alpha1.UsageItem{Item: "processed-bytes", Unit: "GB", Quantity: "20.25"}),
			},
		},
	}, {
		name: "no traffic measured is a measured zero, not an estimate",
		in:   providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Usage: nlbUsage("0", "0", "0", "0")},
		want: &v1alpha1.CostStatus{
			Hourly: "0.0225", Monthly: "16.425", Currency: "USD", Source: "embedded:aws-2026-11-21", Region: "us-east-1", Basis: "documented",
			Breakdown: []v1alpha1.CostItem{{Item: "nlb-hour", Quantity: 1, Hourly: "0.0225"}},
			Fixed:     "0.0225",
			Usage: &v1alpha1.UsageCost{
				Source: "cloudwatch:AWS/NetworkELB", MeasuredAt: metav1.NewTime(measuredAt), Hourly: "0",
				LastDay: period(dayStart, dayEnd, "0",
					v1alpha1.UsageItem{Item: "nlcu", Unit: "nlcu-hours", Quantity: "0", Amount: "0"},
					v1alpha1.UsageItem{Item: "processed-bytes", Unit: "GB", Quantity: "0"}),
				MonthToDate: period(monthStart, dayEnd, "0",
					v1alpha1.UsageItem{Item: "nlcu", Unit: "nlcu-hours", Quantity: "0", Amount: "0"},
					v1alpha1.UsageItem{Item: "processed-bytes", Unit: "GB", Quantity: "0"}),
			},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Price("lb.portico.dev/aws", tt.in)
			if err != nil {
				t.Fatalf("Price: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("cost (-want +got):\n%s", diff)
			}
		})
	}
}

// Local data through the forwarders is priced per GB from the ConfigMap;
// without a per-GB price it is UnitNotPriced, never free.
func TestPriceUsagePerGB(t *testing.T) {
	usage := &providers.Usage{Source: "forwarder", MeasuredAt: measuredAt,
		LastDay: &providers.UsageWindow{Start: dayStart, End: dayEnd, Quantities: []providers.UsageQuantity{
			{Name: "dataProcessed", Unit: providers.UnitGB, Value: rat("48")}}}}
	in := providers.CostInputs{Kind: "local-address", Region: "dc1", Units: map[string]int{"addresses": 1}, Usage: usage}

	_, err := defaultCatalog(t).Price("lb.portico.dev/local", in)
	var pe *pricing.Error
	if !errors.As(err, &pe) || pe.Reason != pricing.ReasonUnitNotPriced {
		t.Fatalf("without a per-GB price: err = %v, want reason %s", err, pricing.ReasonUnitNotPriced)
	}

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
      data-processed: "0.002"
`), "configmap:portico-system/portico-prices")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := pricing.Load(base, override)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cat.Price("lb.portico.dev/local", in)
	if err != nil {
		t.Fatalf("Price: %v", err)
	}
	// 48 GB × 0.002 = 0.096 a day = 0.004 an hour, plus the address.
	if got.Hourly != "0.005" || got.Fixed != "0.001" || got.Usage.Hourly != "0.004" || got.Usage.LastDay.Amount != "0.096" {
		t.Errorf("hourly %s fixed %s usage %s day %s; want 0.005, 0.001, 0.004, 0.096", got.Hourly, got.Fixed, got.Usage.Hourly, got.Usage.LastDay.Amount)
	}
	if it := got.Usage.LastDay.Items; len(it) != 1 || it[0] != (v1alpha1.UsageItem{Item: "data-processed", Unit: "GB", Quantity: "48", Amount: "0.096"}) {
		t.Errorf("items = %+v", it)
	}
}

func TestPriceUsageRefusesBadQuantities(t *testing.T) {
	c := defaultCatalog(t)
	for name, q := range map[string]providers.UsageQuantity{
		"negative":     {Name: "nlcus", Unit: providers.UnitHours, Value: rat("-1")},
		"missing":      {Name: "nlcus", Unit: providers.UnitHours},
		"unknown unit": {Name: "nlcus", Unit: "bytes", Value: rat("1")},
		"unpriced":     {Name: "flows", Unit: providers.UnitHours, Value: rat("1")},
	} {
		t.Run(name, func(t *testing.T) {
			u := &providers.Usage{Source: "cloudwatch", MeasuredAt: measuredAt,
				LastDay: &providers.UsageWindow{Start: dayStart, End: dayEnd, Quantities: []providers.UsageQuantity{q}}}
			cost, err := c.Price("lb.portico.dev/aws", providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", Usage: u})
			var pe *pricing.Error
			if !errors.As(err, &pe) || cost != nil {
				t.Fatalf("cost %v err %v; want a *pricing.Error and no cost", cost, err)
			}
		})
	}
}
