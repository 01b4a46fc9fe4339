package pricefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// AzureItem is one price record of the Azure Retail Prices API; RetailPrice
// is written to JSON as the number literal given ("0.025").
// https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices#api-response-examples
type AzureItem struct {
	CurrencyCode, ArmRegionName, Location, MeterName, ProductName, SKUName, ServiceName string
	ServiceFamily, UnitOfMeasure, Type, SKUID, MeterID                                  string
	TierMinimumUnits, RetailPrice                                                       string
}

// AzureRetail serves GET /api/retail/prices.
type AzureRetail struct {
	mu    sync.Mutex
	Items []AzureItem
	// PageSize of each answer; the real API returns at most 1,000 records
	// per request and a NextPageLink for the rest (default 1000).
	PageSize int
	// Status, when set, answers every request with it (503, 429).
	Status int
	// IgnoreCurrency answers in USD whatever currencyCode asks: a fault,
	// to test that a currency mismatch is caught.
	IgnoreCurrency bool
	// Rates convert USD items into other currencies, as the API does for
	// currencyCode (decimal factors, "0.9").
	Rates map[string]string
	Calls int
}

// Add adds items.
func (f *AzureRetail) Add(items ...AzureItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Items = append(f.Items, items...)
}

// SetStatus makes every answer fail with status (0: answer normally).
func (f *AzureRetail) SetStatus(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Status = status
}

var azureClause = regexp.MustCompile(`^(\w+) eq '((?:[^']|'')*)'$`)

// azureFields are the filterable fields of the API.
// https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices#supported-filters
var azureFields = map[string]func(AzureItem) string{
	"armRegionName": func(i AzureItem) string { return i.ArmRegionName },
	"location":      func(i AzureItem) string { return i.Location },
	"meterId":       func(i AzureItem) string { return i.MeterID },
	"meterName":     func(i AzureItem) string { return i.MeterName },
	"productName":   func(i AzureItem) string { return i.ProductName },
	"skuName":       func(i AzureItem) string { return i.SKUName },
	"serviceName":   func(i AzureItem) string { return i.ServiceName },
	"serviceFamily": func(i AzureItem) string { return i.ServiceFamily },
	"skuId":         func(i AzureItem) string { return i.SKUID },
	"priceType":     func(i AzureItem) string { return i.Type },
}

func (f *AzureRetail) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if r.Method != http.MethodGet || r.URL.Path != "/api/retail/prices" {
		http.Error(w, `{"Error":"not found"}`, http.StatusNotFound)
		return
	}
	if f.Status != 0 {
		http.Error(w, `{"Error":"unavailable"}`, f.Status)
		return
	}
	q := r.URL.Query()
	// The filter is a conjunction of "field eq 'value'"; values are case
	// sensitive since API version 2023-01-01-preview.
	// https://learn.microsoft.com/en-us/rest/api/cost-management/retail-prices/azure-retail-prices#filter-values-are-case-sensitive
	var clauses [][2]string
	if flt := q.Get("$filter"); flt != "" {
		for _, c := range strings.Split(flt, " and ") {
			m := azureClause.FindStringSubmatch(strings.TrimSpace(c))
			if m == nil || azureFields[m[1]] == nil {
				http.Error(w, fmt.Sprintf(`{"Error":"Invalid OData filter clause %q"}`, c), http.StatusBadRequest)
				return
			}
			clauses = append(clauses, [2]string{m[1], strings.ReplaceAll(m[2], "''", "'")})
		}
	}
	currency := "USD"
	if c := q.Get("currencyCode"); c != "" {
		currency = strings.Trim(c, "'")
	}
	rate := "1"
	if currency != "USD" && !f.IgnoreCurrency {
		var ok bool
		if rate, ok = f.Rates[currency]; !ok {
			http.Error(w, `{"Error":"Invalid currency code"}`, http.StatusBadRequest)
			return
		}
	} else if f.IgnoreCurrency {
		currency = "USD"
	}
	var match []AzureItem
	for _, it := range f.Items {
		ok := true
		for _, c := range clauses {
			ok = ok && azureFields[c[0]](it) == c[1]
		}
		if ok {
			match = append(match, it)
		}
	}
	skip := 0
	if s := q.Get("$skip"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, `{"Error":"Invalid $skip"}`, http.StatusBadRequest)
			return
		}
		skip = min(n, len(match))
	}
	size := f.PageSize
	if size <= 0 {
		size = 1000
	}
	end := min(skip+size, len(match))
	var items []json.RawMessage
	for _, it := range match[skip:end] {
		items = append(items, azureJSON(it, currency, rate))
	}
	var next *string
	if end < len(match) {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("$skip", strconv.Itoa(end))
		link := "http://" + r.Host + r.URL.Path + "?" + nq.Encode()
		next = &link
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"BillingCurrency": currency, "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
		"Items": items, "NextPageLink": next, "Count": len(items),
	})
}

func azureJSON(it AzureItem, currency, rate string) json.RawMessage {
	price := it.RetailPrice
	if rate != "1" {
		price = mulDecimal(price, rate)
	}
	cur := it.CurrencyCode
	if currency != "USD" {
		cur = currency
	}
	tier := it.TierMinimumUnits
	if tier == "" {
		tier = "0.0"
	}
	s := fmt.Sprintf(`{"currencyCode":%q,"tierMinimumUnits":%s,"retailPrice":%s,"unitPrice":%s,"armRegionName":%q,"location":%q,`+
		`"effectiveStartDate":"2026-11-01T00:00:00Z","meterId":%q,"meterName":%q,"productId":"DZH318Z0BNVX","skuId":%q,`+
		`"productName":%q,"skuName":%q,"serviceName":%q,"serviceId":"DZH317F1HKN0","serviceFamily":%q,"unitOfMeasure":%q,`+
		`"type":%q,"isPrimaryMeterRegion":true,"armSkuName":""}`,
		cur, tier, price, price, it.ArmRegionName, it.Location, it.MeterID, it.MeterName, it.SKUID,
		it.ProductName, it.SKUName, it.ServiceName, it.ServiceFamily, it.UnitOfMeasure, it.Type)
	return json.RawMessage(s)
}
