package pricefake

import (
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// GCPSKU is one SKU of the Cloud Billing Catalog with a single pricing
// tier starting at 0 (Tiers adds more), priced in USD.
// https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list
type GCPSKU struct {
	ID, Description, UsageType string
	Regions                    []string
	// UsageUnit: "h", "GiBy".
	UsageUnit string
	// Price is the USD price per unit as a decimal ("0.025").
	Price string
	// Tiers are further (startUsageAmount, price) tiers.
	Tiers [][2]string
}

// GCPCatalog serves GET /v1/services/{service}/skus of the Cloud Billing
// Catalog API for one service.
type GCPCatalog struct {
	mu      sync.Mutex
	Service string // "6F81-5844-456A"
	SKUs    []GCPSKU
	// Rates convert USD into the currencyCode asked for; the API returns
	// currencyConversionRate with converted prices.
	Rates map[string]string
	// Status answers every request with it (403 PERMISSION_DENIED, 503).
	Status int
	// IgnoreCurrency answers in USD whatever currencyCode asks (a fault).
	IgnoreCurrency bool
	// MaxPageSize caps a page below the API's 5000 (tests of paging).
	MaxPageSize int
	Calls       int
}

// Add adds SKUs.
func (f *GCPCatalog) Add(skus ...GCPSKU) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.SKUs = append(f.SKUs, skus...)
}

// SetStatus makes every answer fail with status (0: answer normally).
func (f *GCPCatalog) SetStatus(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Status = status
}

func gcpError(w http.ResponseWriter, code int, status, msg string) {
	// The error shape of Google APIs.
	// https://cloud.google.com/apis/design/errors#http_mapping
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func (f *GCPCatalog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	want := "/v1/services/" + f.Service + "/skus"
	if r.Method != http.MethodGet || r.URL.Path != want {
		gcpError(w, 404, "NOT_FOUND", "unknown service or method "+r.URL.Path)
		return
	}
	if f.Status != 0 {
		gcpError(w, f.Status, http.StatusText(f.Status), "injected failure")
		return
	}
	q := r.URL.Query()
	// pageSize: at most 5000 SKUs per page; pageToken continues a listing.
	// https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list#query-parameters
	size := 5000
	if s := q.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			gcpError(w, 400, "INVALID_ARGUMENT", "invalid pageSize")
			return
		}
		if n > 0 && n < 5000 {
			size = n
		}
	}
	if f.MaxPageSize > 0 {
		size = min(size, f.MaxPageSize)
	}
	start := 0
	if t := q.Get("pageToken"); t != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(t, "tok-"))
		if err != nil || !strings.HasPrefix(t, "tok-") || n <= 0 || n > len(f.SKUs) {
			gcpError(w, 400, "INVALID_ARGUMENT", "invalid pageToken")
			return
		}
		start = n
	}
	currency, rate := "USD", "1"
	if c := q.Get("currencyCode"); c != "" && c != "USD" && !f.IgnoreCurrency {
		var ok bool
		if rate, ok = f.Rates[c]; !ok {
			gcpError(w, 400, "INVALID_ARGUMENT", "unsupported currency code "+c)
			return
		}
		currency = c
	}
	end := min(start+size, len(f.SKUs))
	var skus []map[string]any
	for _, s := range f.SKUs[start:end] {
		skus = append(skus, gcpJSON(f.Service, s, currency, rate))
	}
	out := map[string]any{"skus": skus}
	if end < len(f.SKUs) {
		out["nextPageToken"] = "tok-" + strconv.Itoa(end)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func gcpJSON(service string, s GCPSKU, currency, rate string) map[string]any {
	usage := s.UsageType
	if usage == "" {
		usage = "OnDemand"
	}
	tiers := []map[string]any{gcpTier("0", s.Price, currency, rate)}
	for _, t := range s.Tiers {
		tiers = append(tiers, gcpTier(t[0], t[1], currency, rate))
	}
	return map[string]any{
		"name":        "services/" + service + "/skus/" + s.ID,
		"skuId":       s.ID,
		"description": s.Description,
		"category": map[string]string{
			"serviceDisplayName": "Compute Engine", "resourceFamily": "Network",
			"resourceGroup": "LoadBalancing", "usageType": usage,
		},
		"serviceRegions": s.Regions,
		"pricingInfo": []map[string]any{{
			"effectiveTime": "2026-11-29T12:00:00Z",
			"summary":       "",
			"pricingExpression": map[string]any{
				"usageUnit": s.UsageUnit, "usageUnitDescription": s.UsageUnit, "baseUnit": s.UsageUnit,
				"baseUnitConversionFactor": 1, "displayQuantity": 1, "tieredRates": tiers,
			},
			"currencyConversionRate": json.Number(rate),
		}},
		"serviceProviderName": "Google",
	}
}

// gcpTier writes a price as google.type.Money: units (a string, int64) and
// nanos (int32). https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list#Money
func gcpTier(start, price, currency, rate string) map[string]any {
	p, _ := new(big.Rat).SetString(mulDecimal(price, rate))
	units := new(big.Int).Quo(p.Num(), p.Denom())
	frac := new(big.Rat).Sub(p, new(big.Rat).SetInt(units))
	nanos := new(big.Rat).Mul(frac, big.NewRat(1e9, 1))
	n, _ := nanos.Float64()
	st, _ := strconv.ParseFloat(start, 64)
	return map[string]any{
		"startUsageAmount": st,
		"unitPrice":        map[string]any{"currencyCode": currency, "units": units.String(), "nanos": int64(n + 0.5)},
	}
}

// mulDecimal multiplies two decimal strings exactly, printing at most 10
// decimal places.
func mulDecimal(a, b string) string {
	x, ok1 := new(big.Rat).SetString(a)
	y, ok2 := new(big.Rat).SetString(b)
	if !ok1 || !ok2 {
		return a // a deliberately malformed price stays malformed
	}
	s := new(big.Rat).Mul(x, y).FloatString(10)
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	return fmt.Sprint(s)
}
