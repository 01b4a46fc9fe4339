package sources_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/pricing/sources"
	"github.com/portico-lb/portico/pricing/sources/pricefake"
	"github.com/portico-lb/portico/providers"
)

func reasonOf(err error) string {
	var pe *pricing.Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

func quoteString(q *pricing.Quote) string {
	var parts []string
	for _, m := range []map[string]string{q.Hourly, q.PerGB} {
		for _, k := range sortedKeys(m) {
			parts = append(parts, k+"="+m[k])
		}
	}
	return q.Currency + " " + strings.Join(parts, " ")
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// priceThrough runs a source inside a Refresher, as the operator does, and
// prices one load balancer.
func priceThrough(t *testing.T, src pricing.Source, in providers.CostInputs) (string, error) {
	t.Helper()
	base, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	live, err := pricing.NewLive(base)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pricing.NewRefresher(live, pricing.RefresherOptions{Sources: []pricing.Source{src}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = r.Price("test", in)
	r.Refresh(context.Background(), false)
	cost, err := r.Price("test", in)
	if cost == nil {
		return "", err
	}
	var items []string
	for _, it := range cost.Breakdown {
		items = append(items, fmt.Sprintf("%s×%d=%s", it.Item, it.Quantity, it.Hourly))
	}
	s := cost.Hourly + " " + cost.Currency + " " + cost.Source + " [" + strings.Join(items, " ") + "]"
	if cost.SourceError != "" {
		s += " sourceError"
	}
	return s, err
}

// --- AWS Price List Query API -------------------------------------------

func awsPriceList(t *testing.T) (*pricefake.AWSPriceList, *httptest.Server) {
	f := pricefake.NewAWSPriceList()
	// ap-south-1's NLB SKUs (usage type prefix APS3) and us-east-1's
	// (no prefix), with enough other products of the family and region
	// that GetProducts pages (MaxResults 100).
	f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "ap-south-1", "APS3-LoadBalancerUsage", "NLBHOURAPS3", "Hrs", "USD", "0.0239000000"))
	for i := range 150 {
		f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "ap-south-1", fmt.Sprintf("APS3-Other%03d", i), fmt.Sprintf("OTHER%03d", i), "Hrs", "USD", "0.0100000000"))
	}
	f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "ap-south-1", "APS3-LCUUsage", "NLCUAPS3", "LCU-Hrs", "USD", "0.0060000000"))
	f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Application", "ap-south-1", "APS3-LoadBalancerUsage", "ALBHOURAPS3", "Hrs", "USD", "0.0239000000"))
	f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "us-east-1", "LoadBalancerUsage", "NLBHOURUSE1", "Hrs", "USD", "0.0225000000"))
	f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "us-east-1", "LCUUsage", "NLCUUSE1", "LCU-Hrs", "USD", "0.0060000000"))
	f.Add("AmazonVPC", pricefake.AWSDoc("AmazonVPC", "", "ap-south-1", "APS3-PublicIPv4:InUseAddress", "IPV4APS3", "Hrs", "USD", "0.0050000000"))
	f.Add("AmazonVPC", pricefake.AWSDoc("AmazonVPC", "", "ap-south-1", "APS3-PublicIPv4:IdleAddress", "IPV4IDLEAPS3", "Hrs", "USD", "0.0070000000"))
	f.Add("AmazonVPC", pricefake.AWSDoc("AmazonVPC", "", "us-east-1", "USE1-PublicIPv4:InUseAddress", "IPV4USE1", "Hrs", "USD", "0.0050000000"))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func awsSource(srv *httptest.Server) *sources.AWSNLB {
	cfg := aws.Config{
		Region:           "eu-west-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		RetryMaxAttempts: 1,
	}
	return sources.NewAWSNLB(cfg, srv.URL)
}

func TestAWSPriceListQuote(t *testing.T) {
	f, srv := awsPriceList(t)
	q, err := awsSource(srv).Fetch(context.Background(), "ap-south-1", "USD")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := quoteString(q), "USD hour=0.0239 nlcus=0.006 publicIPs=0.005"; got != want {
		t.Errorf("quote %q, want %q", got, want)
	}
	if f.Calls < 3 {
		t.Errorf("%d GetProducts calls; want the NLB family paged (2) and the VPC one (1)", f.Calls)
	}
	got, err := priceThrough(t, awsSource(srv), providers.CostInputs{Kind: "aws-nlb", Region: "ap-south-1", Units: map[string]int{"publicIPs": 2}})
	if want := "0.0399 USD live:aws-price-list [nlb-hour×1=0.0239 nlcu-estimate×1=0.006 public-ipv4×2=0.01]"; err != nil || got != want {
		t.Errorf("priced %q, %v; want %q", got, err, want)
	}
}

func TestAWSPriceListEndpointFromTheSDKEnvironment(t *testing.T) {
	_, srv := awsPriceList(t)
	// The SDK's service-specific endpoint variable.
	// https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
	t.Setenv("AWS_ENDPOINT_URL_PRICING", srv.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("eu-west-1"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := sources.NewAWSNLB(cfg, "").Fetch(context.Background(), "us-east-1", "USD")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := quoteString(q), "USD hour=0.0225 nlcus=0.006 publicIPs=0.005"; got != want {
		t.Errorf("quote %q, want %q", got, want)
	}
}

func TestAWSPriceListBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		region string
		add    func(f *pricefake.AWSPriceList)
		reason string
	}{
		{"no NLCU SKU in the region", "eu-south-2", func(f *pricefake.AWSPriceList) {
			f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "eu-south-2", "EUS2-LoadBalancerUsage", "A", "Hrs", "USD", "0.0250000000"))
			f.Add("AmazonVPC", pricefake.AWSDoc("AmazonVPC", "", "eu-south-2", "EUS2-PublicIPv4:InUseAddress", "B", "Hrs", "USD", "0.0050000000"))
		}, pricing.ReasonLivePriceMissing},
		{"priced in CNY only", "cn-north-1", func(f *pricefake.AWSPriceList) {
			f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "cn-north-1", "CNN1-LoadBalancerUsage", "A", "Hrs", "CNY", "0.1560000000"))
		}, pricing.ReasonLivePriceCurrency},
		{"a document that is not JSON", "ap-south-1", func(f *pricefake.AWSPriceList) {
			f.Add("AWSELB", `{"product": {"productFamily": "Load Balancer-Network", "attributes": {"regionCode": "ap-south-1"}}, "terms": [`)
		}, pricing.ReasonLivePriceInvalid},
		{"two different prices for the NLB hour", "ap-south-1", func(f *pricefake.AWSPriceList) {
			f.Add("AWSELB", pricefake.AWSDoc("AWSELB", "Load Balancer-Network", "ap-south-1", "APS3-LoadBalancerUsage", "DUP", "Hrs", "USD", "0.0300000000"))
		}, pricing.ReasonLivePriceInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := awsPriceList(t)
			tc.add(f)
			_, err := awsSource(srv).Fetch(context.Background(), tc.region, "USD")
			if reasonOf(err) != tc.reason {
				t.Errorf("Fetch: %v; want reason %s", err, tc.reason)
			}
		})
	}
}

func TestAWSPriceListNotPermittedFallsBackToEmbedded(t *testing.T) {
	f, srv := awsPriceList(t)
	f.SetDeny(true)
	_, err := awsSource(srv).Fetch(context.Background(), "us-east-1", "USD")
	if err == nil || reasonOf(err) != "" || !strings.Contains(err.Error(), "AccessDeniedException") {
		t.Fatalf("Fetch: %v; want AccessDeniedException as an unavailable API, not bad data", err)
	}
	got, err := priceThrough(t, awsSource(srv), providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1"})
	if want := "0.0285 USD embedded:aws-2026-11-21 [nlb-hour×1=0.0225 nlcu-estimate×1=0.006] sourceError"; err != nil || got != want {
		t.Errorf("priced %q, %v; want %q", got, err, want)
	}
}

// --- Azure Retail Prices API ---------------------------------------------

func azureRetail(t *testing.T) (*pricefake.AzureRetail, *httptest.Server) {
	f := &pricefake.AzureRetail{PageSize: 2, Rates: map[string]string{"EUR": "0.92"}}
	lb := func(region, meter, unit, price string) pricefake.AzureItem {
		return pricefake.AzureItem{CurrencyCode: "USD", ArmRegionName: region, Location: region, MeterName: meter, ProductName: "Load Balancer",
			SKUName: "Standard", ServiceName: "Load Balancer", ServiceFamily: "Networking", UnitOfMeasure: unit, Type: "Consumption",
			SKUID: "DZH318Z0BNVX/00" + meter[:3], RetailPrice: price}
	}
	ip := func(region, sku, meter, price string) pricefake.AzureItem {
		return pricefake.AzureItem{CurrencyCode: "USD", ArmRegionName: region, Location: region, MeterName: meter, ProductName: "IP Addresses",
			SKUName: sku, ServiceName: "Virtual Network", ServiceFamily: "Networking", UnitOfMeasure: "1 Hour", Type: "Consumption",
			SKUID: "DZH318Z0BNVX/" + sku, RetailPrice: price}
	}
	f.Add(
		// The Standard Load Balancer meters are published under "Global".
		lb("Global", "Standard Included LB Rules and Outbound Rules", "1 Hour", "0.025"),
		lb("Global", "Standard Overage LB Rules and Outbound Rules", "1 Hour", "0.01"),
		lb("Global", "Standard Data Processed", "1 GB", "0.005"),
		lb("Global", "Basic Included LB Rules", "1 Hour", "0"),
		ip("uksouth", "Standard", "Standard IPv4 Static Public IP", "0.005"),
		ip("uksouth", "Basic", "Basic IPv4 Static Public IP", "0.0036"),
		ip("uksouth", "Standard", "Standard IPv4 Static Public IP", "0.005"),
		ip("uaenorth", "Standard", "Standard IPv4 Static Public IP", "5E-3"),
	)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestAzureRetailPricesQuote(t *testing.T) {
	f, srv := azureRetail(t)
	src := &sources.AzureStandardLB{BaseURL: srv.URL}
	q, err := src.Fetch(context.Background(), "uksouth", "USD")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := quoteString(q), "USD publicIPs=0.005 rules=0.01 rules.firstBlock=0.025 data-processed=0.005"; got != want {
		t.Errorf("quote %q, want %q", got, want)
	}
	if f.Calls < 4 {
		t.Errorf("%d calls; want the regional LB query, the Global one and the paged IP query", f.Calls)
	}
	t.Run("a JSON number with an exponent is read exactly", func(t *testing.T) {
		q, err := src.Fetch(context.Background(), "uaenorth", "USD")
		if err != nil || q.Hourly["publicIPs"] != "0.005" {
			t.Errorf("%+v, %v", q, err)
		}
	})
	t.Run("EUR as the API converts it", func(t *testing.T) {
		q, err := src.Fetch(context.Background(), "uksouth", "EUR")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := quoteString(q), "EUR publicIPs=0.0046 rules=0.0092 rules.firstBlock=0.023 data-processed=0.0046"; got != want {
			t.Errorf("quote %q, want %q", got, want)
		}
	})
	t.Run("priced through the Refresher", func(t *testing.T) {
		got, err := priceThrough(t, src, providers.CostInputs{Kind: "azure-standard-lb", Region: "uksouth", Units: map[string]int{"rules": 7, "publicIPs": 1}})
		if want := "0.05 USD live:azure-retail-prices [public-ip×1=0.005 lb-rules-first-5×5=0.025 lb-rules-additional×2=0.02]"; err != nil || got != want {
			t.Errorf("priced %q, %v; want %q", got, err, want)
		}
	})
}

func TestAzureRetailPricesBadAnswers(t *testing.T) {
	t.Run("another currency than asked", func(t *testing.T) {
		f, srv := azureRetail(t)
		f.IgnoreCurrency = true
		_, err := (&sources.AzureStandardLB{BaseURL: srv.URL}).Fetch(context.Background(), "uksouth", "EUR")
		if reasonOf(err) != pricing.ReasonLivePriceCurrency {
			t.Errorf("Fetch: %v", err)
		}
	})
	t.Run("no public IP meter in the region", func(t *testing.T) {
		_, srv := azureRetail(t)
		_, err := (&sources.AzureStandardLB{BaseURL: srv.URL}).Fetch(context.Background(), "newzealandnorth", "USD")
		if reasonOf(err) != pricing.ReasonLivePriceMissing {
			t.Errorf("Fetch: %v", err)
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"Items": [{"retailPrice": 0.025,`))
		}))
		defer srv.Close()
		_, err := (&sources.AzureStandardLB{BaseURL: srv.URL}).Fetch(context.Background(), "uksouth", "USD")
		if reasonOf(err) != pricing.ReasonLivePriceInvalid {
			t.Errorf("Fetch: %v", err)
		}
	})
	t.Run("a NextPageLink to another host", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"Items": [], "NextPageLink": "https://elsewhere.example/api/retail/prices?$skip=100"}`))
		}))
		defer srv.Close()
		_, err := (&sources.AzureStandardLB{BaseURL: srv.URL}).Fetch(context.Background(), "uksouth", "USD")
		if reasonOf(err) != pricing.ReasonLivePriceInvalid {
			t.Errorf("Fetch: %v", err)
		}
	})
	t.Run("unavailable falls back to embedded", func(t *testing.T) {
		f, srv := azureRetail(t)
		f.SetStatus(http.StatusServiceUnavailable)
		src := &sources.AzureStandardLB{BaseURL: srv.URL}
		_, err := src.Fetch(context.Background(), "westeurope", "USD")
		if !sources.IsHTTPStatus(err, 503) || reasonOf(err) != "" {
			t.Fatalf("Fetch: %v", err)
		}
		got, err := priceThrough(t, src, providers.CostInputs{Kind: "azure-standard-lb", Region: "westeurope", Units: map[string]int{"rules": 1}})
		if want := "0.025 USD embedded:azure-2026-11-21 [lb-rules-first-5×1=0.025] sourceError"; err != nil || got != want {
			t.Errorf("priced %q, %v; want %q", got, err, want)
		}
	})
}

// --- Cloud Billing Catalog API -------------------------------------------

func gcpCatalog(t *testing.T) (*pricefake.GCPCatalog, *sources.GCPForwardingRule) {
	f := &pricefake.GCPCatalog{Service: "6F81-5844-456A", MaxPageSize: 3, Rates: map[string]string{"EUR": "0.92"}}
	f.Add(
		pricefake.GCPSKU{ID: "C0CF-3E1E-6F2A", Description: "N1 Predefined Instance Core running in Americas", Regions: []string{"us-central1"}, UsageUnit: "h", Price: "0.031611"},
		pricefake.GCPSKU{ID: "D1AF-0BB4-4E2C", Description: "Network Load Balancing: Forwarding Rule Minimum Service Charge in Americas", Regions: []string{"us-central1", "us-east1"}, UsageUnit: "h", Price: "0.025"},
		pricefake.GCPSKU{ID: "9A1B-55C1-1F0E", Description: "Network Load Balancing: Forwarding Rule Additional Service Charge in Americas", Regions: []string{"us-central1", "us-east1"}, UsageUnit: "h", Price: "0.01"},
		pricefake.GCPSKU{ID: "A2C3-6F11-3B0D", Description: "Network Load Balancing: Data Processing Charge in Americas", Regions: []string{"us-central1", "us-east1"}, UsageUnit: "GiBy", Price: "0.008"},
		pricefake.GCPSKU{ID: "E3D4-7A21-9C10", Description: "Network Load Balancing: Forwarding Rule Minimum Service Charge in London", Regions: []string{"europe-west2"}, UsageUnit: "h", Price: "0.0275"},
		pricefake.GCPSKU{ID: "F4E5-8B32-AD21", Description: "Network Load Balancing: Forwarding Rule Additional Service Charge in London", Regions: []string{"europe-west2"}, UsageUnit: "h", Price: "0.011"},
		pricefake.GCPSKU{ID: "0516-9C43-BE32", Description: "Network Load Balancing: Data Processing Charge in London", Regions: []string{"europe-west2"}, UsageUnit: "GiBy", Price: "0.0088"},
		pricefake.GCPSKU{ID: "1627-AD54-CF43", Description: "Network Load Balancing: Forwarding Rule Minimum Service Charge in London (1 year commitment)", Regions: []string{"europe-west2"}, UsageUnit: "h", Price: "0.02", UsageType: "Commit1Yr"},
		pricefake.GCPSKU{ID: "2738-BE65-D054", Description: "Network Load Balancing: Forwarding Rule Minimum Service Charge in Mumbai", Regions: []string{"asia-south1"}, UsageUnit: "h", Price: "1.5"},
	)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	src, err := sources.NewGCPForwardingRule(context.Background(), option.WithEndpoint(srv.URL+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return f, src
}

func TestGCPBillingCatalogQuote(t *testing.T) {
	f, src := gcpCatalog(t)
	q, err := src.Fetch(context.Background(), "europe-west2", "USD")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := quoteString(q), "USD forwardingRules=0.011 forwardingRules.firstBlock=0.0275 data-processed=0.0081956387"; got != want {
		t.Errorf("quote %q, want %q", got, want)
	}
	if f.Calls != 3 {
		t.Errorf("%d calls; want 3 pages of 3 SKUs", f.Calls)
	}
	t.Run("EUR as the API converts it", func(t *testing.T) {
		q, err := src.Fetch(context.Background(), "us-east1", "EUR")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := quoteString(q), "EUR forwardingRules=0.0092 forwardingRules.firstBlock=0.023 data-processed=0.0068545341"; got != want {
			t.Errorf("quote %q, want %q", got, want)
		}
	})
	t.Run("priced through the Refresher", func(t *testing.T) {
		got, err := priceThrough(t, src, providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "europe-west2", Units: map[string]int{"forwardingRules": 6}})
		if want := "0.0385 USD live:gcp-billing-catalog [forwarding-rules-first-5×5=0.0275 forwarding-rules-additional×1=0.011]"; err != nil || got != want {
			t.Errorf("priced %q, %v; want %q", got, err, want)
		}
	})
}

func TestGCPBillingCatalogBadAnswers(t *testing.T) {
	t.Run("no additional-rule SKU in the region", func(t *testing.T) {
		_, src := gcpCatalog(t)
		if _, err := src.Fetch(context.Background(), "asia-south1", "USD"); reasonOf(err) != pricing.ReasonLivePriceMissing {
			t.Errorf("Fetch: %v", err)
		}
	})
	t.Run("another currency than asked", func(t *testing.T) {
		f, src := gcpCatalog(t)
		f.IgnoreCurrency = true
		if _, err := src.Fetch(context.Background(), "us-east1", "EUR"); reasonOf(err) != pricing.ReasonLivePriceCurrency {
			t.Errorf("Fetch: %v", err)
		}
	})
	t.Run("permission denied falls back to embedded", func(t *testing.T) {
		f, src := gcpCatalog(t)
		f.SetStatus(http.StatusForbidden)
		if _, err := src.Fetch(context.Background(), "us-east1", "USD"); err == nil || reasonOf(err) != "" {
			t.Fatalf("Fetch: %v", err)
		}
		got, err := priceThrough(t, src, providers.CostInputs{Kind: "gcp-forwarding-rule", Region: "us-east1", Units: map[string]int{"forwardingRules": 1}})
		if want := "0.025 USD embedded:gcp-2026-11-21 [forwarding-rules-first-5×1=0.025] sourceError"; err != nil || got != want {
			t.Errorf("priced %q, %v; want %q", got, err, want)
		}
	})
}

func TestMoneyDecimal(t *testing.T) {
	for _, tc := range []struct {
		units, nanos int64
		want         string
		ok           bool
	}{
		{0, 25_000_000, "0.025", true},
		{1, 500_000_000, "1.5", true},
		{0, 0, "0", true},
		{-1, -500_000_000, "-1.5", true},
		{1, -5, "", false},
		{0, 1_000_000_000, "", false},
	} {
		got, err := sources.MoneyDecimal(tc.units, tc.nanos)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("MoneyDecimal(%d, %d) = %q, %v; want %q ok=%v", tc.units, tc.nanos, got, err, tc.want, tc.ok)
		}
	}
}
