package pricing

import (
	"context"
	"math/big"
)

// Source fetches current list prices of one product kind from a cloud's
// price API (implementations: pricing/sources). A Source returns bad data as
// an *Error with a LivePrice* reason (LiveErrorf) and an API it cannot
// reach or may not call as any other error: the Refresher keeps the last
// good prices on the first and falls back to the embedded catalog on the
// second.
type Source interface {
	// Kind is the providers.CostInputs.Kind it prices, e.g. "aws-nlb".
	Kind() string
	// Name identifies the API in CostStatus.Source ("live:<name>").
	Name() string
	// Fetch returns the prices of region in currency (ISO 4217).
	Fetch(ctx context.Context, region, currency string) (*Quote, error)
}

// BasisLive is CostStatus.Basis of prices read from a price API.
const BasisLive = "live"

// Keys of Quote.Hourly besides unit names.
const (
	// QuoteFixed is the key of the fixed charge per load balancer hour
	// (the AWS NLB hour).
	QuoteFixed = "hour"
	// QuoteFirstBlockSuffix marks the price of a unit's first block:
	// Hourly["rules"+QuoteFirstBlockSuffix] is the price of the first five
	// rules together, Hourly["rules"] that of each further rule.
	QuoteFirstBlockSuffix = ".firstBlock"
)

// Quote is what a price API says one product costs in one region.
type Quote struct {
	Region string
	// Currency of every amount, as the API stated it.
	Currency string
	// Hourly prices, decimal strings as the API gave them, keyed by
	// QuoteFixed, a CostInputs unit name ("nlcus", "publicIPs") or a unit
	// name with QuoteFirstBlockSuffix.
	Hourly map[string]string
	// PerGB are prices per GB of data processed, keyed by item
	// ("data-processed"), for usage-based cost.
	PerGB map[string]string
	// SKUs names the API's product for each key, for logs and docs.
	SKUs map[string]string
}

// overlay fills the shape of a product's price list (template: which units
// it has, which are free, which come in a first block) with the prices of
// q. Every charged item of the template must be in q with a positive
// price; a free unit stays free. Nothing is ever priced at zero because the
// API was silent.
func overlay(tmpl *compiled, q *Quote, currency, source string) (*compiled, error) {
	if q.Currency != currency {
		return nil, errorf(ReasonLivePriceCurrency, "%s answered in %q for %s, not the configured currency %s", source, q.Currency, q.Region, currency)
	}
	get := func(key, what string) (*big.Rat, error) {
		s, ok := q.Hourly[key]
		if !ok {
			return nil, errorf(ReasonLivePriceMissing, "%s returned no price for %s in %s", source, what, q.Region)
		}
		r, err := ParseAmount(s)
		if err != nil {
			return nil, errorf(ReasonLivePriceInvalid, "%s: price of %s in %s: %v", source, what, q.Region, err)
		}
		if r.Sign() == 0 {
			return nil, errorf(ReasonLivePriceMissing, "%s returned a zero price for %s in %s, which is charged", source, what, q.Region)
		}
		return r, nil
	}
	out := &compiled{hourlyItem: tmpl.hourlyItem, units: map[string]compiledUnit{}, perGB: map[string]*big.Rat{}, basis: BasisLive}
	for _, item := range sortedKeys(tmpl.perGB) {
		if tmpl.perGB[item].Sign() == 0 {
			out.perGB[item] = tmpl.perGB[item] // free: Portico's product model
			continue
		}
		s, ok := q.PerGB[item]
		if !ok {
			return nil, errorf(ReasonLivePriceMissing, "%s returned no price per GB for %s in %s", source, item, q.Region)
		}
		r, err := ParseAmount(s)
		if err != nil {
			return nil, errorf(ReasonLivePriceInvalid, "%s: price per GB of %s in %s: %v", source, item, q.Region, err)
		}
		if r.Sign() == 0 {
			return nil, errorf(ReasonLivePriceMissing, "%s returned a zero price per GB for %s in %s, which is charged", source, item, q.Region)
		}
		out.perGB[item] = r
	}
	if tmpl.hourly != nil {
		h, err := get(QuoteFixed, tmpl.hourlyItem)
		if err != nil {
			return nil, err
		}
		out.hourly = h
	}
	for _, name := range sortedKeys(tmpl.units) {
		u := tmpl.units[name]
		if u.hourly.Sign() == 0 && u.firstBlock == 0 {
			out.units[name] = u // free in every region: Portico's product model, not a price
			continue
		}
		h, err := get(name, u.item)
		if err != nil {
			return nil, err
		}
		u.hourly = h
		if u.firstBlock > 0 {
			b, err := get(name+QuoteFirstBlockSuffix, u.blockItem())
			if err != nil {
				return nil, err
			}
			u.blockPrice = b
		}
		out.units[name] = u
	}
	return out, nil
}

// FetchAll runs src for every region, for tools that build price files
// (hack/pricegen): the quotes that succeeded, and the errors by region.
func FetchAll(ctx context.Context, src Source, regions []string, currency string) (map[string]*Quote, map[string]error) {
	quotes, errs := map[string]*Quote{}, map[string]error{}
	for _, r := range regions {
		q, err := src.Fetch(ctx, r, currency)
		if err != nil {
			errs[r] = err
			continue
		}
		quotes[r] = q
	}
	return quotes, errs
}
