package plugin

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
)

// Periods of kubectl lb cost --period.
const (
	periodDay   = "day"
	periodMonth = "month"
)

// maxUsageAge is how old a last-day reading may be and still stand for
// the last 24 hours; an older one (the operator lost its metrics) is
// replaced by the estimate, with a warning.
const maxUsageAge = 6 * time.Hour

// PeriodCost is what one load balancer cost over a period.
type PeriodCost struct {
	// Fixed is the fixed hourly rate times the hours it existed in the
	// period.
	Fixed string `json:"fixed"`
	// Usage is the metered usage of the period when Measured, otherwise
	// the price list's estimate (hourly rate less the fixed rate, times
	// the hours).
	Usage string `json:"usage"`
	Total string `json:"total"`
	// Measured is true when Usage was read from metrics; UsageSource,
	// UsageStart and UsageEnd then say from where and over which hours
	// (whole hours, so End is at most an hour before the period's end).
	Measured    bool         `json:"measured"`
	UsageSource string       `json:"usageSource,omitempty"`
	UsageStart  *metav1.Time `json:"usageStart,omitempty"`
	UsageEnd    *metav1.Time `json:"usageEnd,omitempty"`
	// UsageNote says why usage is an estimate although metrics exist, or
	// that the latest reading failed and an older one is shown.
	UsageNote string `json:"usageNote,omitempty"`
}

// periodWindow is the period's start and end at now: the last 24 hours,
// or from the first of now's month, 00:00 UTC.
func periodWindow(period string, now time.Time) (time.Time, time.Time) {
	now = now.UTC()
	if period == periodMonth {
		return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), now
	}
	return now.Add(-24 * time.Hour), now
}

// costOverPeriod prices one load balancer's cost over [start, end).
func costOverPeriod(lb *v1alpha1.LoadBalancer, period string, start, end time.Time) (*PeriodCost, *big.Rat, *big.Rat, error) {
	cost := lb.Status.Cost
	hourly, err := pricing.ParseAmount(cost.Hourly)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("LoadBalancer %s/%s: status.cost.hourly: %w", lb.Namespace, lb.Name, err)
	}
	fixedRate := hourly
	if cost.Fixed != "" {
		if fixedRate, err = pricing.ParseAmount(cost.Fixed); err != nil {
			return nil, nil, nil, fmt.Errorf("LoadBalancer %s/%s: status.cost.fixed: %w", lb.Namespace, lb.Name, err)
		}
	}
	from := start
	if c := lb.CreationTimestamp.Time; c.After(from) {
		from = c
	}
	fixed := accruedSince(fixedRate, from, end)
	out := &PeriodCost{}
	var use *big.Rat
	if p, note := measuredPeriod(cost.Usage, period, start, end); p != nil {
		if use, err = pricing.ParseAmount(p.Amount); err != nil {
			return nil, nil, nil, fmt.Errorf("LoadBalancer %s/%s: status.cost.usage amount: %w", lb.Namespace, lb.Name, err)
		}
		out.Measured, out.UsageSource = true, cost.Usage.Source
		out.UsageStart, out.UsageEnd = p.Start.DeepCopy(), p.End.DeepCopy()
		if cost.Usage.Error != "" {
			out.UsageNote = fmt.Sprintf("the latest reading failed (%s); showing the reading of %s", cost.Usage.Error, cost.Usage.MeasuredAt.UTC().Format(time.RFC3339))
		}
	} else {
		out.UsageNote = note
		// The usage part of the hourly rate: the estimate, or the rate
		// of the last reading when no reading covers this period.
		estimate := new(big.Rat).Sub(hourly, fixedRate)
		if estimate.Sign() < 0 {
			return nil, nil, nil, fmt.Errorf("LoadBalancer %s/%s: status.cost.fixed %s exceeds hourly %s", lb.Namespace, lb.Name, cost.Fixed, cost.Hourly)
		}
		use = accruedSince(estimate, from, end)
	}
	total := new(big.Rat).Add(fixed, use)
	out.Fixed, out.Usage, out.Total = pricing.FormatAmount(fixed), pricing.FormatAmount(use), pricing.FormatAmount(total)
	return out, fixed, use, nil
}

// measuredPeriod returns the usage period that stands for the requested
// one, or why none does.
func measuredPeriod(u *v1alpha1.UsageCost, period string, start, end time.Time) (*v1alpha1.UsagePeriod, string) {
	if u == nil {
		return nil, ""
	}
	if period == periodMonth {
		// It starts at the first of the month, or later for a load
		// balancer created this month.
		if p := u.MonthToDate; p != nil && !p.Start.Time.Before(start) && p.Start.Time.Before(end) {
			return p, ""
		}
		return nil, fmt.Sprintf("usage last read at %s, not this month", u.MeasuredAt.UTC().Format(time.RFC3339))
	}
	if p := u.LastDay; p != nil && end.Sub(p.End.Time) <= maxUsageAge {
		return p, ""
	}
	return nil, fmt.Sprintf("usage last read at %s, more than %s ago", u.MeasuredAt.UTC().Format(time.RFC3339), maxUsageAge)
}

// periodSum accumulates one currency's period cost.
type periodSum struct {
	lbs, measured     int
	fixed, use, total big.Rat
}

// buildPeriodReport is buildCostReport for --period: what each load
// balancer cost over the period, its fixed and usage parts, summed by key
// and currency.
func buildPeriodReport(lbs []v1alpha1.LoadBalancer, svcs map[types.NamespacedName]*corev1.Service, by, period string, now time.Time) (*CostReport, error) {
	start, end := periodWindow(period, now)
	report := &CostReport{By: by, At: metav1.NewTime(now), Period: period, Start: &metav1.Time{Time: start}, End: &metav1.Time{Time: end},
		Groups: []CostGroup{}, Totals: []CostGroup{}, LoadBalancers: []CostLine{}}
	type bucket struct {
		unpriced   int
		currencies map[string]*periodSum
	}
	buckets := map[string]*bucket{}
	total := &bucket{currencies: map[string]*periodSum{}}
	add := func(b *bucket, cur string, fixed, use *big.Rat, measured bool) {
		if b.currencies[cur] == nil {
			b.currencies[cur] = &periodSum{}
		}
		s := b.currencies[cur]
		s.lbs++
		if measured {
			s.measured++
		}
		s.fixed.Add(&s.fixed, fixed)
		s.use.Add(&s.use, use)
		s.total.Add(&s.total, new(big.Rat).Add(fixed, use))
	}
	for i := range lbs {
		lb := &lbs[i]
		svc := svcs[types.NamespacedName{Namespace: lb.Namespace, Name: lb.Name}]
		line, key := costLine(lb, svc, by)
		cost := lb.Status.Cost
		if buckets[key] == nil {
			buckets[key] = &bucket{currencies: map[string]*periodSum{}}
		}
		if cost == nil {
			line.Unpriced = unpricedReason(lb, svc)
			buckets[key].unpriced++
			total.unpriced++
			report.LoadBalancers = append(report.LoadBalancers, line)
			continue
		}
		pc, fixed, use, err := costOverPeriod(lb, period, start, end)
		if err != nil {
			return nil, err
		}
		line.Currency, line.Source, line.Hourly = cost.Currency, cost.Source, cost.Hourly
		line.Basis, line.Stale, line.SourceError = cost.Basis, cost.Stale, cost.SourceError
		line.Period = pc
		report.LoadBalancers = append(report.LoadBalancers, line)
		add(buckets[key], cost.Currency, fixed, use, pc.Measured)
		add(total, cost.Currency, fixed, use, pc.Measured)
	}
	groups := func(key string, b *bucket) []CostGroup {
		var out []CostGroup
		for _, cur := range sortedKeys(b.currencies) {
			s := b.currencies[cur]
			out = append(out, CostGroup{Key: key, Currency: cur, LoadBalancers: s.lbs, Measured: s.measured,
				Fixed: pricing.FormatAmount(&s.fixed), Usage: pricing.FormatAmount(&s.use), Total: pricing.FormatAmount(&s.total)})
		}
		if b.unpriced > 0 {
			if len(out) == 0 {
				out = append(out, CostGroup{Key: key, Fixed: "0", Usage: "0", Total: "0"})
			}
			out[0].LoadBalancers += b.unpriced
			out[0].Unpriced = b.unpriced
		}
		return out
	}
	for _, key := range sortedKeys(buckets) {
		report.Groups = append(report.Groups, groups(key, buckets[key])...)
	}
	if len(lbs) > 0 {
		report.Totals = groups("TOTAL", total)
	}
	return report, nil
}

func (g *global) periodTable(r *CostReport, wide bool) error {
	header := []string{strings.ToUpper(r.By), "LOAD BALANCERS", "FIXED", "USAGE", "TOTAL", "MEASURED"}
	if wide {
		header = append(header, "UNPRICED", "EXACT TOTAL")
	}
	t := newTable(g.opts.Out, header...)
	add := func(grp CostGroup) {
		key := grp.Key
		if key == "" {
			key = "<none>"
		}
		priced := grp.LoadBalancers - grp.Unpriced
		row := []string{key, fmt.Sprint(grp.LoadBalancers), money(grp.Fixed, grp.Currency), money(grp.Usage, grp.Currency), money(grp.Total, grp.Currency), fmt.Sprintf("%d/%d", grp.Measured, priced)}
		if grp.Currency == "" {
			row[2], row[3], row[4] = "<unpriced>", "<unpriced>", "<unpriced>"
		}
		if wide {
			exact := grp.Total + " " + grp.Currency
			if grp.Currency == "" {
				exact = "<unpriced>"
			}
			row = append(row, fmt.Sprint(grp.Unpriced), exact)
		}
		t.row(row...)
	}
	for _, grp := range r.Groups {
		add(grp)
	}
	for _, grp := range r.Totals {
		add(grp)
	}
	return t.flush()
}

// describePeriod is the line kubectl lb cost --period prints on stderr.
func describePeriod(r *CostReport) string {
	what := "Last 24 hours"
	if r.Period == periodMonth {
		what = "Month to date"
	}
	return fmt.Sprintf("%s: %s to %s. USAGE is measured for MEASURED load balancers (to the last whole hour), the price list's estimate for the others.",
		what, r.Start.UTC().Format("2006-01-02 15:04 MST"), r.End.UTC().Format("2006-01-02 15:04 MST"))
}
