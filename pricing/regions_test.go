package pricing_test

import (
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
)

// Every public region of the three clouds is priced by the embedded
// catalog alone: no RegionNotPriced until someone writes a ConfigMap.
func TestEveryPublicRegionIsPriced(t *testing.T) {
	cat, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]map[string]int{
		"aws-nlb":             {"publicIPs": 2, "listeners": 1, "targetGroups": 1, "targets": 3, "subnets": 2},
		"gcp-forwarding-rule": {"forwardingRules": 2, "addresses": 1, "backendServices": 1, "healthChecks": 1, "targets": 3},
		"azure-standard-lb":   {"rules": 2, "publicIPs": 1, "probes": 1, "targets": 3},
	}
	for kind, regions := range pricing.PublicRegions {
		if len(regions) < 30 {
			t.Errorf("%s: only %d public regions listed", kind, len(regions))
		}
		if !slices.IsSorted(regions) {
			t.Errorf("%s: regions not sorted", kind)
		}
		for _, r := range regions {
			cost, err := cat.Price("test", providers.CostInputs{Kind: kind, Region: r, Units: units[kind]})
			if err != nil {
				t.Errorf("%s in %s: %v", kind, r, err)
				continue
			}
			if cost.Hourly == "0" || cost.Basis == "" {
				t.Errorf("%s in %s: hourly %s basis %q; want a price and how it is known", kind, r, cost.Hourly, cost.Basis)
			}
		}
	}
}

// A carried price is exactly the price of the region it names, and that
// region's own price is documented: a carried entry cannot drift from its
// origin or point at another carried one.
func TestCarriedPricesMatchTheirDocumentedOrigin(t *testing.T) {
	files, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := pricing.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]map[string]int{
		"aws-nlb":             {"publicIPs": 3, "nlcus": 2},
		"gcp-forwarding-rule": {"forwardingRules": 7},
		"azure-standard-lb":   {"rules": 7, "publicIPs": 3},
	}
	in := func(kind, region string) providers.CostInputs {
		return providers.CostInputs{Kind: kind, Region: region, Units: units[kind]}
	}
	checked := 0
	for _, f := range files {
		for _, p := range f.Products {
			for _, rp := range p.Prices {
				if rp.Basis == "" {
					t.Errorf("%s %s %v: no basis", f.Name, p.Kind, rp.Regions)
				}
				if rp.Basis != pricing.BasisCarried {
					continue
				}
				origin, err := cat.Price("test", in(p.Kind, rp.CarriedFrom))
				if err != nil {
					t.Errorf("%s: carried from %s: %v", p.Kind, rp.CarriedFrom, err)
					continue
				}
				if origin.Basis != pricing.BasisDocumented {
					t.Errorf("%s: carried from %s, whose basis is %q, not documented", p.Kind, rp.CarriedFrom, origin.Basis)
				}
				for _, r := range rp.Regions {
					got, err := cat.Price("test", in(p.Kind, r))
					if err != nil || got.Hourly != origin.Hourly || got.Basis != "carried:"+rp.CarriedFrom {
						t.Errorf("%s in %s: %+v, %v; want %s like %s and basis carried:%s", p.Kind, r, got, err, origin.Hourly, rp.CarriedFrom, rp.CarriedFrom)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no carried entries checked")
	}
}

// Every region prices the data that --usage-metrics measures for the kinds
// whose cloud bills it per GB (GCP's inbound data processed by the load
// balancer, Azure's Standard Load Balancer data processed): measured data
// must never be UnitNotPriced with the embedded catalog alone. AWS measures
// NLCU-hours, priced through the capacity-unit price.
func TestEveryPublicRegionPricesDataProcessed(t *testing.T) {
	cat, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	units := map[string]map[string]int{
		"gcp-forwarding-rule": {"forwardingRules": 1, "addresses": 1, "backendServices": 1, "healthChecks": 1, "targets": 3},
		"azure-standard-lb":   {"rules": 1, "publicIPs": 1, "probes": 1, "targets": 3},
	}
	// Per GB (10^9 bytes): GCP lists $0.008 per GiB (0.0074505806 per GB), Azure $0.005 per GB.
	wantDay := map[string]string{"gcp-forwarding-rule": "0.74505806", "azure-standard-lb": "0.5"}
	for kind, u := range units {
		for _, r := range pricing.PublicRegions[kind] {
			usage := &providers.Usage{Source: "test", MeasuredAt: day.Add(24 * time.Hour), LastDay: &providers.UsageWindow{
				Start: day, End: day.Add(24 * time.Hour),
				Quantities: []providers.UsageQuantity{{Name: "dataProcessed", Unit: providers.UnitGB, Value: big.NewRat(100, 1)}}}}
			cost, err := cat.Price("test", providers.CostInputs{Kind: kind, Region: r, Units: u, Usage: usage})
			if err != nil {
				t.Errorf("%s in %s: 100 GB processed: %v", kind, r, err)
				continue
			}
			if cost.Usage == nil || cost.Usage.LastDay == nil || cost.Usage.LastDay.Amount != wantDay[kind] {
				t.Errorf("%s in %s: usage %+v; want 100 GB priced at %s", kind, r, cost.Usage, wantDay[kind])
			}
		}
	}
}
