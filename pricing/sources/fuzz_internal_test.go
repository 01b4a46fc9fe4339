package sources

import (
	"regexp"
	"testing"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/pricing/sources/pricefake"
)

// An AWS price list document from the network never panics the parser, and
// a price it accepts is one the catalog can use or refuse with a reason.
func FuzzAWSPriceListDocument(f *testing.F) {
	f.Add(pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "ap-south-1", "APS3-LoadBalancerUsage", "A", "Hrs", "USD", "0.0239000000"))
	f.Add(pricefake.AWSDoc("AmazonVPC", "", "us-east-1", "PublicIPv4:InUseAddress", "B", "Hrs", "CNY", "1e3"))
	f.Add(`{"product":{"attributes":{"usagetype":"LCUUsage"}},"terms":{"OnDemand":{"x":{"priceDimensions":{"y":{"beginRange":"0","pricePerUnit":{"USD":"-1"}}}}}}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		d, err := decodeAWSDoc(doc)
		if err != nil {
			return
		}
		for _, re := range []*regexp.Regexp{awsNLBHour, awsNLCU, awsIPv4} {
			q := &pricing.Quote{Region: "r", Currency: "USD", Hourly: map[string]string{}, SKUs: map[string]string{}}
			if err := pickAWS(q, "k", []awsProduct{d}, re, "USD"); err != nil {
				if _, ok := err.(*pricing.Error); !ok {
					t.Fatalf("bad data gave %T %v, want a *pricing.Error", err, err)
				}
				continue
			}
			if q.Hourly["k"] == "" && !re.MatchString("") {
				t.Fatalf("accepted an empty price from %q", doc)
			}
		}
	})
}

// An Azure Retail Prices page from the network never panics the parser;
// a price it accepts is an exact decimal.
func FuzzAzureRetailPage(f *testing.F) {
	f.Add([]byte(`{"BillingCurrency":"USD","Items":[{"currencyCode":"USD","tierMinimumUnits":0.0,"retailPrice":0.025,"armRegionName":"Global","meterName":"Standard Included LB Rules and Outbound Rules","productName":"Load Balancer","skuName":"Standard","serviceName":"Load Balancer","unitOfMeasure":"1 Hour","type":"Consumption"}],"NextPageLink":null,"Count":1}`))
	f.Add([]byte(`{"Items":[{"retailPrice":5E-3,"tierMinimumUnits":"0"}]}`))
	f.Add([]byte(`{"Items":[{"retailPrice":1e400}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodeAzurePage(body)
		if err != nil {
			return
		}
		for _, m := range append(append([]azureMeter{}, azureLBMeters...), azureIPMeter) {
			q := &pricing.Quote{Region: "r", Currency: "USD", Hourly: map[string]string{}, PerGB: map[string]string{}, SKUs: map[string]string{}}
			if err := pickAzure(q, p.Items, m, "USD"); err != nil {
				continue
			}
			v := q.Hourly[m.key]
			if m.perGB {
				v = q.PerGB[m.key]
			}
			if _, err := pricing.ParseNumber(v); err != nil {
				t.Fatalf("accepted %q for %s: %v", v, m.meter, err)
			}
		}
	})
}

// google.type.Money from the network: any units and nanos either convert
// exactly or are refused.
func FuzzMoneyDecimal(f *testing.F) {
	f.Add(int64(0), int64(25_000_000))
	f.Add(int64(-1), int64(-5))
	f.Add(int64(9_223_372_036_854_775_807), int64(999_999_999))
	f.Fuzz(func(t *testing.T, units, nanos int64) {
		s, err := MoneyDecimal(units, nanos)
		if err != nil {
			return
		}
		if _, err := pricing.ParseNumber(s); err != nil && len(s) <= 64 {
			t.Fatalf("MoneyDecimal(%d, %d) = %q, which does not parse: %v", units, nanos, s, err)
		}
	})
}
