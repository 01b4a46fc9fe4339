package sources

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"

	cloudbilling "google.golang.org/api/cloudbilling/v1"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/pricing"
)

// GCPComputeEngineService is the Cloud Billing Catalog name of Compute
// Engine, whose SKUs include the passthrough Network Load Balancer's
// forwarding rules. https://cloud.google.com/billing/v1/how-tos/catalog-api
const GCPComputeEngineService = "services/6F81-5844-456A"

// GCPForwardingRule prices kind gcp-forwarding-rule from the Cloud Billing
// Catalog API: the SKUs "Network Load Balancing: Forwarding Rule Minimum
// Service Charge in <location>" (the first five rules), "... Additional
// Service Charge ..." (each further rule) and "... Data Processing Charge
// ..." (per GiB) whose serviceRegions hold the region.
type GCPForwardingRule struct {
	Service *cloudbilling.APIService
}

// NewGCPForwardingRule builds the source; opts choose credentials (by
// default Application Default Credentials; an API key with
// option.WithAPIKey also works for the public catalog) and the endpoint
// (option.WithEndpoint).
func NewGCPForwardingRule(ctx context.Context, opts ...option.ClientOption) (*GCPForwardingRule, error) {
	svc, err := cloudbilling.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud billing catalog client: %w", err)
	}
	return &GCPForwardingRule{Service: svc}, nil
}

// Kind implements pricing.Source.
func (*GCPForwardingRule) Kind() string { return "gcp-forwarding-rule" }

// Name implements pricing.Source.
func (*GCPForwardingRule) Name() string { return "gcp-billing-catalog" }

type gcpSKU struct {
	key, phrase, unit string
	perGB             bool
}

var gcpSKUs = []gcpSKU{
	{key: "forwardingRules" + pricing.QuoteFirstBlockSuffix, phrase: "Network Load Balancing: Forwarding Rule Minimum Service Charge", unit: "h"},
	{key: "forwardingRules", phrase: "Network Load Balancing: Forwarding Rule Additional Service Charge", unit: "h"},
	{key: "data-processed", phrase: "Network Load Balancing: Data Processing Charge", unit: "GiBy", perGB: true},
}

// Fetch implements pricing.Source. It reads the whole Compute Engine
// catalog page by page (the API filters by nothing but currency) and
// keeps the SKUs above for region.
func (s *GCPForwardingRule) Fetch(ctx context.Context, region, currency string) (*pricing.Quote, error) {
	all, err := s.List(ctx, currency)
	if err != nil {
		return nil, err
	}
	return QuoteGCP(all, region, currency)
}

// List returns the Compute Engine SKUs priced in currency, all pages.
func (s *GCPForwardingRule) List(ctx context.Context, currency string) ([]*cloudbilling.Sku, error) {
	var all []*cloudbilling.Sku
	err := s.Service.Services.Skus.List(GCPComputeEngineService).CurrencyCode(currency).PageSize(5000).Pages(ctx, func(r *cloudbilling.ListSkusResponse) error {
		for _, sku := range r.Skus {
			if sku != nil && strings.HasPrefix(sku.Description, "Network Load Balancing:") {
				all = append(all, sku)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gcp-billing-catalog: listing %s SKUs: %w", GCPComputeEngineService, err)
	}
	return all, nil
}

// QuoteGCP picks region's prices out of a SKU list (hack/pricegen reads
// the catalog once for every region).
func QuoteGCP(skus []*cloudbilling.Sku, region, currency string) (*pricing.Quote, error) {
	q := &pricing.Quote{Region: region, Currency: currency, Hourly: map[string]string{}, PerGB: map[string]string{}, SKUs: map[string]string{}}
	for _, want := range gcpSKUs {
		prices := map[string]string{}
		for _, sku := range skus {
			if !strings.HasPrefix(sku.Description, want.phrase) || !slices.Contains(sku.ServiceRegions, region) {
				continue
			}
			if sku.Category != nil && sku.Category.UsageType != "" && sku.Category.UsageType != "OnDemand" {
				continue
			}
			p, err := gcpFirstTier(sku, want.unit, currency)
			if err != nil {
				return nil, err
			}
			prices[p] = sku.SkuId + " " + sku.Description
		}
		switch len(prices) {
		case 0:
			return nil, pricing.LiveErrorf(pricing.ReasonLivePriceMissing, "gcp-billing-catalog has no SKU %q in %s", want.phrase, region)
		case 1:
		default:
			return nil, pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "gcp-billing-catalog: %d different prices for %q in %s", len(prices), want.phrase, region)
		}
		for p, sku := range prices {
			if want.perGB {
				perGB, err := perGBFromPerGiB(p)
				if err != nil {
					return nil, pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "gcp-billing-catalog: price of %q in %s: %v", want.phrase, region, err)
				}
				q.PerGB[want.key] = perGB
			} else {
				q.Hourly[want.key] = p
			}
			q.SKUs[want.key] = sku
		}
	}
	return q, nil
}

// perGBFromPerGiB turns a price per GiB (2^30 bytes), the unit the Cloud
// Billing Catalog uses for data ("GiBy"), into Portico's price per GB
// (10^9 bytes): p x 10^9 / 2^30, rounded half-up to the price lists' 10
// decimal places.
func perGBFromPerGiB(p string) (string, error) {
	r, err := pricing.ParseAmount(p)
	if err != nil {
		return "", err
	}
	r.Mul(r, big.NewRat(1_000_000_000, 1<<30))
	return pricing.FormatAmount(r), nil
}

// gcpFirstTier is the unit price of the tier starting at 0 of the SKU's
// latest pricing info, as an exact decimal of units + nanos/10^9.
func gcpFirstTier(sku *cloudbilling.Sku, unit, currency string) (string, error) {
	if len(sku.PricingInfo) == 0 || sku.PricingInfo[len(sku.PricingInfo)-1].PricingExpression == nil {
		return "", pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "gcp-billing-catalog: SKU %s has no pricing expression", sku.SkuId)
	}
	pe := sku.PricingInfo[len(sku.PricingInfo)-1].PricingExpression
	if pe.UsageUnit != unit {
		return "", pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "gcp-billing-catalog: SKU %s is priced per %q, not per %q", sku.SkuId, pe.UsageUnit, unit)
	}
	for _, t := range pe.TieredRates {
		if t == nil || t.StartUsageAmount != 0 {
			continue
		}
		if t.UnitPrice == nil {
			return "", pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "gcp-billing-catalog: SKU %s: tier without a unit price", sku.SkuId)
		}
		if t.UnitPrice.CurrencyCode != currency {
			return "", pricing.LiveErrorf(pricing.ReasonLivePriceCurrency, "gcp-billing-catalog: SKU %s is priced in %q, not %s", sku.SkuId, t.UnitPrice.CurrencyCode, currency)
		}
		return MoneyDecimal(t.UnitPrice.Units, t.UnitPrice.Nanos)
	}
	return "", pricing.LiveErrorf(pricing.ReasonLivePriceMissing, "gcp-billing-catalog: SKU %s has no tier starting at 0", sku.SkuId)
}

// MoneyDecimal is google.type.Money's units + nanos/10^9 as a decimal
// string. nanos must be within ±999,999,999 and of the sign of units.
// https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list#Money
func MoneyDecimal(units, nanos int64) (string, error) {
	if nanos <= -1e9 || nanos >= 1e9 || (units > 0 && nanos < 0) || (units < 0 && nanos > 0) {
		return "", pricing.LiveErrorf(pricing.ReasonLivePriceInvalid, "gcp-billing-catalog: money units %d nanos %d is not a valid amount", units, nanos)
	}
	r := new(big.Rat).SetFrac(big.NewInt(nanos), big.NewInt(1e9))
	r.Add(r, new(big.Rat).SetInt64(units))
	return pricing.FormatAmount(r), nil
}
