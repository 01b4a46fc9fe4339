package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/portico-lb/portico/pricing"
)

// AzureRetailPricesURL is the public, unauthenticated Azure Retail Prices
// API. https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices
const AzureRetailPricesURL = "https://prices.azure.com"

// AzureStandardLB prices kind azure-standard-lb from the Azure Retail Prices
// API: the Standard Load Balancer's "Standard Included LB Rules and
// Outbound Rules" (the first five rules), "Standard Overage LB Rules and
// Outbound Rules" (each further rule) and "Standard Data Processed" (per
// GB) meters, which Azure publishes under the region or under "Global",
// and the "Standard IPv4 Static Public IP" meter of IP Addresses.
type AzureStandardLB struct {
	// BaseURL defaults to AzureRetailPricesURL.
	BaseURL string
	Client  *http.Client
	// MaxPages bounds paging (default 20); the filters return a page or two.
	MaxPages int
}

// Kind implements pricing.Source.
func (*AzureStandardLB) Kind() string { return "azure-standard-lb" }

// Name implements pricing.Source.
func (*AzureStandardLB) Name() string { return "azure-retail-prices" }

// azureItem is one price of the Items list.
// https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices#api-response-examples
type azureItem struct {
	CurrencyCode     string      `json:"currencyCode"`
	TierMinimumUnits json.Number `json:"tierMinimumUnits"`
	RetailPrice      json.Number `json:"retailPrice"`
	ArmRegionName    string      `json:"armRegionName"`
	MeterName        string      `json:"meterName"`
	ProductName      string      `json:"productName"`
	SKUName          string      `json:"skuName"`
	ServiceName      string      `json:"serviceName"`
	UnitOfMeasure    string      `json:"unitOfMeasure"`
	Type             string      `json:"type"`
	SKUID            string      `json:"skuId"`
}

type azurePage struct {
	BillingCurrency string      `json:"BillingCurrency"`
	Items           []azureItem `json:"Items"`
	NextPageLink    *string     `json:"NextPageLink"`
	Count           int         `json:"Count"`
}

type azureMeter struct {
	key, product, sku, meter, unit string
	perGB                          bool
}

var azureLBMeters = []azureMeter{
	{key: "rules" + pricing.QuoteFirstBlockSuffix, product: "Load Balancer", sku: "Standard", meter: "Standard Included LB Rules and Outbound Rules", unit: "1 Hour"},
	{key: "rules", product: "Load Balancer", sku: "Standard", meter: "Standard Overage LB Rules and Outbound Rules", unit: "1 Hour"},
	{key: "data-processed", product: "Load Balancer", sku: "Standard", meter: "Standard Data Processed", unit: "1 GB", perGB: true},
}

var azureIPMeter = azureMeter{key: "publicIPs", product: "IP Addresses", sku: "Standard", meter: "Standard IPv4 Static Public IP", unit: "1 Hour"}

// Fetch implements pricing.Source.
func (s *AzureStandardLB) Fetch(ctx context.Context, region, currency string) (*pricing.Quote, error) {
	q := &pricing.Quote{Region: region, Currency: currency, Hourly: map[string]string{}, PerGB: map[string]string{}, SKUs: map[string]string{}}
	lb, err := s.items(ctx, currency, fmt.Sprintf("serviceName eq 'Load Balancer' and priceType eq 'Consumption' and armRegionName eq '%s'", odataString(region)))
	if err != nil {
		return nil, err
	}
	if !hasAzureMeter(lb, azureLBMeters[0]) {
		// The Standard Load Balancer meters are published under "Global"
		// rather than each region.
		lb, err = s.items(ctx, currency, "serviceName eq 'Load Balancer' and priceType eq 'Consumption' and armRegionName eq 'Global'")
		if err != nil {
			return nil, err
		}
	}
	ip, err := s.items(ctx, currency, fmt.Sprintf("serviceName eq 'Virtual Network' and productName eq 'IP Addresses' and priceType eq 'Consumption' and armRegionName eq '%s'", odataString(region)))
	if err != nil {
		return nil, err
	}
	for _, m := range azureLBMeters {
		if err := pickAzure(q, lb, m, currency); err != nil {
			return nil, err
		}
	}
	if err := pickAzure(q, ip, azureIPMeter, currency); err != nil {
		return nil, err
	}
	return q, nil
}

func hasAzureMeter(items []azureItem, m azureMeter) bool {
	for _, it := range items {
		if it.MeterName == m.meter && it.ProductName == m.product {
			return true
		}
	}
	return false
}

// pickAzure takes the first tier (tierMinimumUnits 0) of the meter.
func pickAzure(q *pricing.Quote, items []azureItem, m azureMeter, currency string) error {
	var found []azureItem
	for _, it := range items {
		if it.MeterName == m.meter && it.ProductName == m.product && it.SKUName == m.sku && it.Type == "Consumption" {
			found = append(found, it)
		}
	}
	if len(found) == 0 {
		return pricing.LiveErrorf(pricing.ReasonLivePriceMissing, "azure-retail-prices returned no %q meter of %s for %s", m.meter, m.product, q.Region)
	}
	prices := map[string]azureItem{}
	for _, it := range found {
		if it.CurrencyCode != currency {
			return pricing.LiveErrorf(pricing.ReasonLivePriceCurrency, "azure-retail-prices: %q for %s is in %s, not %s", m.meter, q.Region, it.CurrencyCode, currency)
		}
		if it.UnitOfMeasure != m.unit {
			return pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "azure-retail-prices: %q for %s is per %q, not per %q", m.meter, q.Region, it.UnitOfMeasure, m.unit)
		}
		if tier := string(it.TierMinimumUnits); tier != "0" && tier != "0.0" {
			continue // a later tier; Portico prices the first
		}
		p, err := decimalLiteral(string(it.RetailPrice))
		if err != nil {
			return pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "azure-retail-prices: %q for %s: retailPrice %v", m.meter, q.Region, err)
		}
		prices[p] = it
	}
	if len(prices) != 1 {
		return pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "azure-retail-prices: %d first-tier prices for %q in %s", len(prices), m.meter, q.Region)
	}
	for p, it := range prices {
		if m.perGB {
			q.PerGB[m.key] = p
		} else {
			q.Hourly[m.key] = p
		}
		q.SKUs[m.key] = it.SKUID + " " + it.MeterName
	}
	return nil
}

// decimalLiteral turns a JSON number as the API wrote it ("0.025",
// "5E-3", "1.0") into a plain decimal string without float rounding.
func decimalLiteral(n string) (string, error) {
	r, err := pricing.ParseNumber(n)
	if err != nil {
		return "", err
	}
	return pricing.FormatAmount(r), nil
}

// items pages through the API with NextPageLink.
func (s *AzureStandardLB) items(ctx context.Context, currency, filter string) ([]azureItem, error) {
	base := s.BaseURL
	if base == "" {
		base = AzureRetailPricesURL
	}
	hc := s.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	maxPages := s.MaxPages
	if maxPages <= 0 {
		maxPages = 20
	}
	v := url.Values{}
	v.Set("api-version", "2023-01-01-preview")
	v.Set("currencyCode", "'"+currency+"'")
	v.Set("$filter", filter)
	next := strings.TrimSuffix(base, "/") + "/api/retail/prices?" + v.Encode()
	var out []azureItem
	for page := 0; next != ""; page++ {
		if page == maxPages {
			return nil, pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "azure-retail-prices: more than %d pages for %s", maxPages, filter)
		}
		// Follow NextPageLink on the configured host only: a link elsewhere
		// is not an answer of the API Portico was pointed at.
		if !strings.HasPrefix(next, strings.TrimSuffix(base, "/")+"/") {
			return nil, pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "azure-retail-prices: NextPageLink %q leaves %s", next, base)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("azure-retail-prices: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("azure-retail-prices: reading the answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, &HTTPError{API: "azure-retail-prices", Status: resp.StatusCode, Body: firstLine(body)}
		}
		p, err := decodeAzurePage(body)
		if err != nil {
			return nil, pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "azure-retail-prices: malformed answer: %v", err)
		}
		out = append(out, p.Items...)
		next = ""
		if p.NextPageLink != nil {
			next = *p.NextPageLink
		}
	}
	return out, nil
}

func decodeAzurePage(body []byte) (*azurePage, error) {
	var p azurePage
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

// HTTPError is a price API's refusal or failure (403, 429, 5xx): the API is
// unavailable, which falls back to the embedded catalog.
type HTTPError struct {
	API    string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.API, e.Status, e.Body)
}

// IsHTTPStatus tells whether err is an *HTTPError with status code.
func IsHTTPStatus(err error, code int) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == code
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// odataString escapes a value for a quoted OData string literal.
func odataString(s string) string { return strings.ReplaceAll(s, "'", "''") }
