package pricing

import (
	"math/big"
	"strings"
	"time"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

// measuredUnits are the CostInputs units that usage measures in
// unit-hours: their "-estimate" lines give way to the usage part.
func measuredUnits(u *providers.Usage) map[string]bool {
	out := map[string]bool{}
	if u == nil {
		return out
	}
	for _, w := range []*providers.UsageWindow{u.LastDay, u.MonthToDate} {
		if w == nil {
			continue
		}
		for _, q := range w.Quantities {
			if q.Unit == providers.UnitHours && !q.Included {
				out[q.Name] = true
			}
		}
	}
	return out
}

// priceUsage prices metered usage with the entry's prices: unit-hours at
// the unit's hourly price, GB at the entry's per-GB price. A quantity the
// price list cannot price is an error (UnitNotPriced), never free. The
// returned rate is the last day's amount per hour (the month to date's
// when there is no last day).
func priceUsage(kind string, u *providers.Usage, e *entry) (*v1alpha1.UsageCost, *big.Rat, error) {
	out := &v1alpha1.UsageCost{Source: u.Source, MeasuredAt: metav1.NewTime(u.MeasuredAt.UTC().Truncate(time.Second)), Error: u.Error}
	rate := new(big.Rat)
	rated := false
	for _, p := range []struct {
		w   *providers.UsageWindow
		out **v1alpha1.UsagePeriod
	}{{u.LastDay, &out.LastDay}, {u.MonthToDate, &out.MonthToDate}} {
		if p.w == nil {
			continue
		}
		period, amount, err := priceWindow(kind, p.w, e)
		if err != nil {
			return nil, nil, err
		}
		*p.out = period
		if hours := p.w.End.Sub(p.w.Start); !rated && hours > 0 {
			rate = new(big.Rat).Mul(amount, big.NewRat(int64(time.Hour/time.Second), int64(hours/time.Second)))
			rated = true
		}
	}
	out.Hourly = FormatAmount(rate)
	return out, rate, nil
}

func priceWindow(kind string, w *providers.UsageWindow, e *entry) (*v1alpha1.UsagePeriod, *big.Rat, error) {
	total := new(big.Rat)
	p := &v1alpha1.UsagePeriod{Start: metav1.NewTime(w.Start.UTC()), End: metav1.NewTime(w.End.UTC())}
	for _, q := range w.Quantities {
		if q.Value == nil || q.Value.Sign() < 0 {
			return nil, nil, errorf(ReasonCostInputsInvalid, "%s usage %s: want a quantity of at least zero", kind, q.Name)
		}
		item := v1alpha1.UsageItem{Quantity: FormatAmount(q.Value)}
		var price *big.Rat
		switch q.Unit {
		case providers.UnitHours:
			u, ok := e.units[q.Name]
			if !ok && !q.Included {
				return nil, nil, errorf(ReasonUnitNotPriced, "%s usage reports %s, which %s does not price for %s", kind, q.Name, e.source, kind)
			}
			item.Item = kebab(q.Name)
			if ok {
				item.Item, price = u.item, u.hourly
			}
			item.Unit = item.Item + "-hours"
		case providers.UnitGB:
			item.Item, item.Unit = kebab(q.Name), providers.UnitGB
			if !q.Included {
				perGB, ok := e.perGB[item.Item]
				if !ok {
					return nil, nil, errorf(ReasonUnitNotPriced, "%s usage reports GB of %s, which %s does not price per GB for %s", kind, item.Item, e.source, kind)
				}
				price = perGB
			}
		default:
			return nil, nil, errorf(ReasonCostInputsInvalid, "%s usage %s: unit %q, want %q or %q", kind, q.Name, q.Unit, providers.UnitHours, providers.UnitGB)
		}
		if !q.Included {
			amount := new(big.Rat).Mul(q.Value, price)
			total.Add(total, amount)
			item.Amount = FormatAmount(amount)
		}
		p.Items = append(p.Items, item)
	}
	p.Amount = FormatAmount(total)
	return p, total, nil
}

// kebab turns a lowerCamel unit name into a breakdown item name
// ("dataProcessed" -> "data-processed").
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
