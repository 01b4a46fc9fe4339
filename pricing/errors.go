package pricing

import (
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// Reasons a load balancer could not be priced. They are UpperCamel words fit
// for a condition's reason.
const (
	// ReasonPriceDataInvalid: a price file (embedded or ConfigMap) is
	// malformed; nothing is priced from it.
	ReasonPriceDataInvalid = "PriceDataInvalid"
	// ReasonProductNotPriced: no price data for the CostInputs.Kind.
	ReasonProductNotPriced = "ProductNotPriced"
	// ReasonRegionNotPriced: the product has no price for the region.
	ReasonRegionNotPriced = "RegionNotPriced"
	// ReasonUnitNotPriced: the provider reported a unit the price list lacks.
	ReasonUnitNotPriced = "UnitNotPriced"
	// ReasonCostInputsInvalid: the provider's cost inputs are unusable
	// (no kind, negative counts).
	ReasonCostInputsInvalid = "CostInputsInvalid"
	// ReasonLivePriceMissing: a live price API returned nothing for a SKU
	// Portico charges (or a zero price for it).
	ReasonLivePriceMissing = "LivePriceMissing"
	// ReasonLivePriceCurrency: a live price API answered in another
	// currency than the configured one.
	ReasonLivePriceCurrency = "LivePriceCurrencyMismatch"
	// ReasonLivePriceInvalid: a live price API's answer is malformed
	// (unparsable document, price that is not a decimal amount, ambiguous
	// SKUs).
	ReasonLivePriceInvalid = "LivePriceInvalid"
)

// LiveErrorf returns an *Error with one of the LivePrice* reasons: bad data
// from a live price API, as opposed to an API that cannot be reached.
func LiveErrorf(reason, format string, args ...any) error {
	return errorf(reason, format, args...)
}

// isDataError tells bad price data (an *Error) from an unreachable or
// refusing price API (any other error).
func isDataError(err error) bool {
	var pe *Error
	return errors.As(err, &pe)
}

// Error says why a load balancer has no cost. The controller reports Reason
// and Message in a condition (see Condition) instead of writing a zero cost.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

func invalidf(format string, args ...any) error {
	return &Error{Reason: ReasonPriceDataInvalid, Message: "invalid price data: " + fmt.Sprintf(format, args...)}
}

func errorf(reason, format string, args ...any) error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ConditionType is the LoadBalancer condition that reports pricing.
const ConditionType = "lb.portico.dev/Priced"

// ReasonPriced is the reason of a true CostEstimated condition.
const ReasonPriced = "Priced"

// Condition returns the lb.portico.dev/Priced condition for the outcome of Price:
// True with reason Priced when err is nil and cost is set, otherwise False with the
// *Error's reason (or "PricingFailed") and message. A cost together with an
// error is a last good price kept while the price source gives bad data; the
// message says so.
func Condition(cost *v1alpha1.CostStatus, err error, generation int64) metav1.Condition {
	c := metav1.Condition{Type: ConditionType, ObservedGeneration: generation}
	if err == nil && cost != nil {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonPriced
		c.Message = fmt.Sprintf("Estimated %s %s per hour (%s per month) from list prices %s", cost.Hourly, cost.Currency, cost.Monthly, cost.Source)
		if cost.FetchedAt != nil {
			c.Message += " fetched at " + cost.FetchedAt.UTC().Format(time.RFC3339)
		}
		if cost.Stale {
			c.Message += " (stale)"
		}
		if cost.SourceError != "" {
			c.Message += "; live prices not used: " + cost.SourceError
		}
		return c
	}
	if err == nil {
		err = fmt.Errorf("no cost estimate")
	}
	c.Status, c.Reason, c.Message = metav1.ConditionFalse, "PricingFailed", err.Error()
	var pe *Error
	if errors.As(err, &pe) {
		c.Reason = pe.Reason
	}
	if cost != nil {
		kept := fmt.Sprintf("; keeping the last good price, %s %s per hour from %s", cost.Hourly, cost.Currency, cost.Source)
		if cost.FetchedAt != nil {
			kept += " fetched at " + cost.FetchedAt.UTC().Format(time.RFC3339)
		}
		if cost.Stale {
			kept += " (stale)"
		}
		c.Message += kept
	}
	return c
}
