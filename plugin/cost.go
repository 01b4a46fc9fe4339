package plugin

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
)

// Groupings of kubectl lb cost --by.
const (
	byNamespace = "namespace"
	byClass     = "class"
	byRegion    = "region"
)

// CostReport is kubectl lb cost's result; -o json and -o yaml print it.
// Amounts are exact decimal strings in the group's currency.
type CostReport struct {
	// By is the grouping: namespace, class or region.
	By string `json:"by"`
	// At is the time accrued cost is computed to.
	At metav1.Time `json:"at"`
	// Period is "day" (the last 24 hours) or "month" (month to date) with
	// --period, when the groups and lines carry the cost over [Start, End)
	// rather than rates and accrued cost.
	Period string       `json:"period,omitempty"`
	Start  *metav1.Time `json:"start,omitempty"`
	End    *metav1.Time `json:"end,omitempty"`
	// Groups are sorted by key, then currency.
	Groups []CostGroup `json:"groups"`
	// Totals sum the groups, one per currency.
	Totals []CostGroup `json:"totals"`
	// LoadBalancers are the priced and unpriced load balancers.
	LoadBalancers []CostLine `json:"loadBalancers"`
}

// CostGroup sums the load balancers sharing a key and a currency.
type CostGroup struct {
	Key           string `json:"key"`
	Currency      string `json:"currency,omitempty"`
	LoadBalancers int    `json:"loadBalancers"`
	// Unpriced counts load balancers in the group without a cost; they add
	// nothing to the amounts.
	Unpriced int    `json:"unpriced,omitempty"`
	Hourly   string `json:"hourly,omitempty"`
	Monthly  string `json:"monthly,omitempty"`
	// Accrued is each load balancer's hourly cost times the hours since it
	// was created, summed.
	Accrued string `json:"accrued,omitempty"`
	// Fixed, Usage and Total are the period's cost with --period;
	// Measured counts the load balancers whose usage was read from
	// metrics rather than estimated.
	Fixed    string `json:"fixed,omitempty"`
	Usage    string `json:"usage,omitempty"`
	Total    string `json:"total,omitempty"`
	Measured int    `json:"measured,omitempty"`
}

// CostLine is one load balancer's cost.
type CostLine struct {
	Namespace string      `json:"namespace"`
	Name      string      `json:"name"`
	Class     string      `json:"class"`
	Region    string      `json:"region,omitempty"`
	Created   metav1.Time `json:"created"`
	Currency  string      `json:"currency,omitempty"`
	Hourly    string      `json:"hourly,omitempty"`
	Monthly   string      `json:"monthly,omitempty"`
	Accrued   string      `json:"accrued,omitempty"`
	Source    string      `json:"source,omitempty"`
	// Basis, Stale and SourceError are status.cost's: how the price is
	// known for the region, whether live prices are out of date, why the
	// price API was not used.
	Basis       string `json:"basis,omitempty"`
	Stale       bool   `json:"stale,omitempty"`
	SourceError string `json:"sourceError,omitempty"`
	// Unpriced says why a load balancer has no cost.
	Unpriced string `json:"unpriced,omitempty"`
	// Period is its cost over the report's period (--period).
	Period *PeriodCost `json:"period,omitempty"`
}

func newCostCommand(g *global) *cobra.Command {
	var output, by, period string
	cmd := &cobra.Command{
		Use:   "cost",
		Short: "Total load balancer cost by namespace, class or region, and cost accrued since creation",
		Long: `Total the estimated cost of load balancers from their status.cost, grouped by
namespace, class or region. HOURLY and MONTHLY (730 hours) are the current
rates; ACCRUED is each load balancer's current hourly cost times the hours
since it was created, an estimate that assumes its price never changed.

With --period=day (the last 24 hours) or --period=month (the month to
date, from the 1st 00:00 UTC), it shows what each group cost over that
period instead: FIXED (the hourly charges times the hours each load
balancer existed in the period), USAGE (traffic-driven charges: as
measured from the cloud's metrics when the operator runs with
--usage-metrics, else the price list's estimate) and TOTAL; MEASURED
counts the load balancers whose usage was measured.
Costs are list-price estimates (see docs/cost.md), not a bill.`,
		Example: `  kubectl lb cost -A
  kubectl lb cost -A --by class
  kubectl lb cost -A --period=month
  kubectl lb cost -n shop --period=day -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			switch by {
			case byNamespace, byClass, byRegion:
			default:
				return usageError(fmt.Errorf("--by %q: want namespace, class or region", by))
			}
			switch period {
			case "", periodDay, periodMonth:
			default:
				return usageError(fmt.Errorf("--period %q: want day or month", period))
			}
			return g.cost(cmd.Context(), output, by, period)
		},
	}
	outputFlag(cmd, &output)
	cmd.Flags().StringVar(&by, "by", byNamespace, "Group totals by namespace, class or region.")
	cmd.Flags().StringVar(&period, "period", "", "Show the cost over a period instead of rates: day (the last 24 hours) or month (month to date, UTC), split into fixed and usage parts.")
	return cmd
}

func (g *global) cost(ctx context.Context, output, by, period string) error {
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	ns := g.scope(c)
	lbs, err := listLoadBalancers(ctx, c, ns)
	if err != nil {
		return err
	}
	op := g.checkOperator(ctx, c, ns, lbs.Items)
	var report *CostReport
	if period != "" {
		report, err = buildPeriodReport(lbs.Items, servicesByKey(ctx, c, ns), by, period, g.opts.Now())
	} else {
		report, err = buildCostReport(lbs.Items, servicesByKey(ctx, c, ns), by, g.opts.Now())
	}
	if err != nil {
		return err
	}
	if done, err := printObject(g.opts.Out, output, report); done || err != nil {
		if err != nil {
			return err
		}
		return op.Down
	}
	switch {
	case len(lbs.Items) == 0:
		g.noneFound(ns)
	case period != "":
		if err := g.periodTable(report, output == outputWide); err != nil {
			return err
		}
		fmt.Fprintln(g.opts.ErrOut, describePeriod(report))
	default:
		if err := g.costTable(report, output == outputWide); err != nil {
			return err
		}
	}
	for _, l := range report.LoadBalancers {
		if l.Unpriced != "" {
			fmt.Fprintf(g.opts.ErrOut, "Warning: %s/%s has no cost: %s\n", l.Namespace, l.Name, l.Unpriced)
		}
		if strings.HasPrefix(l.Basis, "carried:") {
			fmt.Fprintf(g.opts.ErrOut, "Warning: %s/%s is priced with the list price of %s, assumed for %s and not confirmed\n", l.Namespace, l.Name, strings.TrimPrefix(l.Basis, "carried:"), l.Region)
		}
		if l.Stale {
			fmt.Fprintf(g.opts.ErrOut, "Warning: %s/%s is priced from stale live prices (%s)\n", l.Namespace, l.Name, l.SourceError)
		}
		if l.Period != nil && l.Period.UsageNote != "" {
			fmt.Fprintf(g.opts.ErrOut, "Warning: %s/%s usage: %s\n", l.Namespace, l.Name, l.Period.UsageNote)
		}
	}
	g.warnUnprocessed(op)
	return op.Down
}

// sum accumulates exact amounts in one currency.
type sum struct {
	lbs                      int
	hourly, monthly, accrued big.Rat
}

// bucket is one group key's sums, per currency, and its unpriced count.
type bucket struct {
	unpriced   int
	currencies map[string]*sum
}

func (b *bucket) add(currency string, hourly, accrued *big.Rat) {
	if b.currencies[currency] == nil {
		b.currencies[currency] = &sum{}
	}
	s := b.currencies[currency]
	s.lbs++
	s.hourly.Add(&s.hourly, hourly)
	s.monthly.Add(&s.monthly, pricing.Monthly(hourly))
	s.accrued.Add(&s.accrued, accrued)
}

// groups renders the bucket as one CostGroup per currency; unpriced load
// balancers are counted in the first, or alone when nothing is priced.
func (b *bucket) groups(key string) []CostGroup {
	var out []CostGroup
	for _, cur := range sortedKeys(b.currencies) {
		s := b.currencies[cur]
		out = append(out, CostGroup{Key: key, Currency: cur, LoadBalancers: s.lbs,
			Hourly: pricing.FormatAmount(&s.hourly), Monthly: pricing.FormatAmount(&s.monthly), Accrued: pricing.FormatAmount(&s.accrued)})
	}
	if b.unpriced > 0 {
		if len(out) == 0 {
			out = append(out, CostGroup{Key: key, Hourly: "0", Monthly: "0", Accrued: "0"})
		}
		out[0].LoadBalancers += b.unpriced
		out[0].Unpriced = b.unpriced
	}
	return out
}

// buildCostReport groups lbs by key and currency; it is pure so that the
// arithmetic is table-tested without a cluster.
// svcs are the records' Services, by namespace/name, for their class and
// their Ready condition; a missing Service is read from its record alone.
func buildCostReport(lbs []v1alpha1.LoadBalancer, svcs map[types.NamespacedName]*corev1.Service, by string, now time.Time) (*CostReport, error) {
	buckets := map[string]*bucket{}
	total := &bucket{currencies: map[string]*sum{}}
	report := &CostReport{By: by, At: metav1.NewTime(now), Groups: []CostGroup{}, Totals: []CostGroup{}, LoadBalancers: []CostLine{}}
	for i := range lbs {
		lb := &lbs[i]
		svc := svcs[types.NamespacedName{Namespace: lb.Namespace, Name: lb.Name}]
		line, key := costLine(lb, svc, by)
		cost := lb.Status.Cost
		if buckets[key] == nil {
			buckets[key] = &bucket{currencies: map[string]*sum{}}
		}
		if cost == nil {
			line.Unpriced = unpricedReason(lb, svc)
			buckets[key].unpriced++
			total.unpriced++
			report.LoadBalancers = append(report.LoadBalancers, line)
			continue
		}
		hourly, err := pricing.ParseAmount(cost.Hourly)
		if err != nil {
			return nil, fmt.Errorf("LoadBalancer %s/%s: status.cost.hourly: %w", lb.Namespace, lb.Name, err)
		}
		accrued := accruedSince(hourly, lb.CreationTimestamp.Time, now)
		line.Currency, line.Source = cost.Currency, cost.Source
		line.Basis, line.Stale, line.SourceError = cost.Basis, cost.Stale, cost.SourceError
		line.Hourly, line.Monthly, line.Accrued = pricing.FormatAmount(hourly), pricing.FormatAmount(pricing.Monthly(hourly)), pricing.FormatAmount(accrued)
		report.LoadBalancers = append(report.LoadBalancers, line)
		buckets[key].add(cost.Currency, hourly, accrued)
		total.add(cost.Currency, hourly, accrued)
	}
	for _, key := range sortedKeys(buckets) {
		report.Groups = append(report.Groups, buckets[key].groups(key)...)
	}
	if len(lbs) > 0 {
		report.Totals = total.groups("TOTAL")
	}
	return report, nil
}

// accruedSince is hourly times the hours from created to now, exactly.
func accruedSince(hourly *big.Rat, created, now time.Time) *big.Rat {
	if created.IsZero() || !now.After(created) {
		return new(big.Rat)
	}
	hours := big.NewRat(now.Sub(created).Milliseconds(), int64(time.Hour/time.Millisecond))
	return hours.Mul(hours, hourly)
}

// unpricedReason explains a missing cost: reason first, then the message.
func unpricedReason(lb *v1alpha1.LoadBalancer, svc *corev1.Service) string {
	reason, msg := pendingReason(lb, svc)
	return reason + ": " + brief(msg)
}

func (g *global) costTable(r *CostReport, wide bool) error {
	header := []string{strings.ToUpper(r.By), "LOAD BALANCERS", "HOURLY", "MONTHLY", "ACCRUED"}
	if wide {
		header = append(header, "UNPRICED", "EXACT MONTHLY", "EXACT ACCRUED")
	}
	t := newTable(g.opts.Out, header...)
	add := func(grp CostGroup) {
		key := grp.Key
		if key == "" {
			key = "<none>"
		}
		row := []string{key, fmt.Sprint(grp.LoadBalancers), hourlyMoney(grp.Hourly, grp.Currency), money(grp.Monthly, grp.Currency), money(grp.Accrued, grp.Currency)}
		if grp.Currency == "" {
			row[2], row[3], row[4] = "<unpriced>", "<unpriced>", "<unpriced>"
		}
		if wide {
			exactM, exactA := grp.Monthly+" "+grp.Currency, grp.Accrued+" "+grp.Currency
			if grp.Currency == "" {
				exactM, exactA = "<unpriced>", "<unpriced>"
			}
			row = append(row, fmt.Sprint(grp.Unpriced), exactM, exactA)
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// costLine is a record's line of the cost report, without amounts, and the
// group it falls in under by (namespace, class or region), the same for
// the hourly report and the report over a period.
func costLine(lb *v1alpha1.LoadBalancer, svc *corev1.Service, by string) (CostLine, string) {
	line := CostLine{Namespace: lb.Namespace, Name: lb.Name, Class: classOf(svc, lb), Created: lb.CreationTimestamp}
	if lb.Status.Cost != nil {
		line.Region = lb.Status.Cost.Region
	}
	return line, map[string]string{byNamespace: lb.Namespace, byClass: line.Class, byRegion: line.Region}[by]
}
