// Package usage reads what a load balancer's traffic cost: the quantities a
// cloud meters (AWS NLB capacity units and processed bytes from CloudWatch)
// hour by hour, summed over the last day and the month to date. A Meter
// speaks one metrics API (package usage/meters); the Tracker reads every
// load balancer a reconcile asks about on a schedule and keeps the last good
// reading when the API fails, so that a failure is a condition and an Event,
// never a usage (and a cost) of zero. Package pricing prices the quantities.
package usage

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/providers"
)

// Meter reads hourly usage of one product kind from a metrics API.
type Meter interface {
	// Kind is the providers.CostInputs.Kind it measures ("aws-nlb").
	Kind() string
	// Source names the metrics in the cost, e.g. "cloudwatch:AWS/NetworkELB".
	Source() string
	// Quantities describes what Measure reports: names, units and which
	// are billed through another (Value unset).
	Quantities() []providers.UsageQuantity
	// Measure reads the usage of each resource (CostInputs.MeterID) in
	// region over [start, end), both whole UTC hours. The answer gives,
	// per resource and quantity name, the value of each hour that has
	// data; an hour without data had no traffic. A resource the API gave
	// bad data for is in the error map; an API that cannot be reached or
	// refuses is the returned error.
	Measure(ctx context.Context, region string, ids []string, start, end time.Time) (map[string]Hours, map[string]error, error)
}

// Hours are one resource's measured values: quantity name -> hour start
// (UTC) -> value in the quantity's unit.
type Hours map[string]map[time.Time]*big.Rat

// Reasons of the UsageMeasured condition.
const (
	// ConditionType is the LoadBalancer condition that reports usage
	// metering (only with --usage-metrics).
	ConditionType = "lb.portico.dev/UsageMeasured"
	// ReasonMeasured: the latest reading succeeded.
	ReasonMeasured = "Measured"
	// ReasonPending: not read yet; the cost has the estimate meanwhile.
	ReasonPending = "UsagePending"
	// ReasonUnavailable: the metrics API could not be reached or refused
	// (throttled, not permitted).
	ReasonUnavailable = "UsageMetricsUnavailable"
	// ReasonInvalid: the metrics API's answer is unusable (malformed,
	// negative, partial data it could not complete).
	ReasonInvalid = "UsageDataInvalid"
)

// Error is a reading that failed, with the condition reason.
type Error struct {
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Invalidf returns bad data from a metrics API as an *Error.
func Invalidf(format string, args ...any) error {
	return &Error{Reason: ReasonInvalid, Message: fmt.Sprintf(format, args...)}
}

// ReasonOf is the condition reason for a failed reading.
func ReasonOf(err error) string {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Reason
	}
	return ReasonUnavailable
}

// Options configure a Tracker.
type Options struct {
	Meters []Meter
	// Interval between readings of every load balancer in use; default 1
	// hour (the meters read hourly sums, which change once an hour).
	Interval time.Duration
	// Timeout bounds one Measure; default 1 minute.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnError hears about every failed reading (to log it).
	OnError func(kind, region string, err error)
	// ForgetAfter drops a load balancer nobody asked about for this long
	// (it was deleted); default 3 × Interval. Set it above the controller's
	// resync period, or a quiet load balancer is forgotten and read anew.
	ForgetAfter time.Duration
}

// Tracker keeps the latest good usage of every metered load balancer a
// reconcile asked about. It is safe for concurrent use.
type Tracker struct {
	meters map[string]Meter
	opts   Options

	mu    sync.Mutex
	state map[key]*state
	kick  chan struct{}
}

type key struct{ kind, region, id string }

type state struct {
	good    *providers.Usage
	lastErr error
	fetched bool
	// asked is when a reconcile last asked; a load balancer nobody asked
	// about for Options.ForgetAfter (deleted) is forgotten.
	asked time.Time
}

// NewTracker builds a tracker over the meters of opts.
func NewTracker(opts Options) (*Tracker, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Hour
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ForgetAfter <= 0 {
		opts.ForgetAfter = 3 * opts.Interval
	}
	t := &Tracker{meters: map[string]Meter{}, opts: opts, state: map[key]*state{}, kick: make(chan struct{}, 1)}
	for _, m := range opts.Meters {
		if _, dup := t.meters[m.Kind()]; dup {
			return nil, fmt.Errorf("two usage meters for %s", m.Kind())
		}
		t.meters[m.Kind()] = m
	}
	return t, nil
}

// Usage returns the latest good usage of the load balancer in (nil, nil
// when its kind has no meter or it has no MeterID). After a failed reading
// it returns the last good usage, with Error set, together with the
// failure; with nothing good yet, nil and the failure, or nil and a
// ReasonPending *Error before the first reading.
func (t *Tracker) Usage(in providers.CostInputs) (*providers.Usage, error) {
	if _, ok := t.meters[in.Kind]; !ok || in.MeterID == "" {
		return nil, nil
	}
	k := key{in.Kind, in.Region, in.MeterID}
	t.mu.Lock()
	st, ok := t.state[k]
	if !ok {
		st = &state{}
		t.state[k] = st
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	st.asked = t.opts.Now()
	good, err, fetched := st.good, st.lastErr, st.fetched
	t.mu.Unlock()
	if !fetched {
		return nil, &Error{Reason: ReasonPending, Message: "usage not read yet from " + t.meters[in.Kind].Source()}
	}
	if good == nil {
		return nil, err
	}
	u := *good
	if err != nil {
		u.Error = err.Error()
	}
	return &u, err
}

// Windows returns the periods a reading at now covers: the 24 whole hours
// before now's hour, and the month to date (from the first of now's month,
// 00:00 UTC) to the same end.
func Windows(now time.Time) (day, month [2]time.Time) {
	end := now.UTC().Truncate(time.Hour)
	monthStart := time.Date(end.Year(), end.Month(), 1, 0, 0, 0, 0, time.UTC)
	return [2]time.Time{end.Add(-24 * time.Hour), end}, [2]time.Time{monthStart, end}
}

// Refresh reads every load balancer in use, or only those never read when
// onlyNew is set, one Measure per kind and region; it returns the failures
// by "kind/region[/id]".
func (t *Tracker) Refresh(ctx context.Context, onlyNew bool) map[string]error {
	now := t.opts.Now()
	t.mu.Lock()
	groups := map[key][]string{} // {kind, region, ""} -> ids
	for k, st := range t.state {
		if now.Sub(st.asked) > t.opts.ForgetAfter {
			delete(t.state, k)
			continue
		}
		if onlyNew && st.fetched {
			continue
		}
		g := key{kind: k.kind, region: k.region}
		groups[g] = append(groups[g], k.id)
	}
	t.mu.Unlock()
	gkeys := make([]key, 0, len(groups))
	for g := range groups {
		gkeys = append(gkeys, g)
	}
	sort.Slice(gkeys, func(i, j int) bool { return gkeys[i].kind+gkeys[i].region < gkeys[j].kind+gkeys[j].region })
	failed := map[string]error{}
	day, month := Windows(now)
	for _, g := range gkeys {
		ids := groups[g]
		sort.Strings(ids)
		m := t.meters[g.kind]
		mctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
		hours, bad, err := m.Measure(mctx, g.region, ids, month[0].Add(min(0, day[0].Sub(month[0]))), day[1])
		cancel()
		if err != nil {
			failed[g.kind+"/"+g.region] = err
			if t.opts.OnError != nil {
				t.opts.OnError(g.kind, g.region, err)
			}
		}
		t.mu.Lock()
		for _, id := range ids {
			st := t.state[key{g.kind, g.region, id}]
			if st == nil {
				continue
			}
			st.fetched = true
			idErr := err
			if idErr == nil {
				idErr = bad[id]
			}
			if idErr == nil {
				var u *providers.Usage
				u, idErr = summarize(m, hours[id], now, day, month)
				if ms, ok := m.(MeasuringSincer); ok && idErr == nil {
					u, idErr = measuredSince(u, ms.MeasuringSince(), m.Source())
				}
				if idErr == nil {
					st.good = u
				}
			}
			st.lastErr = idErr
			if idErr != nil && err == nil {
				failed[g.kind+"/"+g.region+"/"+id] = idErr
				if t.opts.OnError != nil {
					t.opts.OnError(g.kind, g.region, idErr)
				}
			}
		}
		t.mu.Unlock()
	}
	return failed
}

// MeasuringSincer is a Meter that has measured only since a time (the
// local byte meter's tally starts with the operator): every period starts
// no earlier than MeasuringSince, a whole hour; zero is not yet.
type MeasuringSincer interface {
	MeasuringSince() time.Time
}

// measuredSince narrows u to the hours a meter measured: earlier hours are
// unknown, not idle.
func measuredSince(u *providers.Usage, since time.Time, source string) (*providers.Usage, error) {
	if since.IsZero() {
		return nil, &Error{Reason: ReasonPending, Message: source + " has not measured yet"}
	}
	out, err := Since(u, since)
	if err != nil {
		return nil, &Error{Reason: ReasonPending, Message: fmt.Sprintf("%s has measured since %s: no whole hour yet", source, since.UTC().Format(time.RFC3339))}
	}
	return out, nil
}

// summarize sums a resource's hourly values into the two windows.
func summarize(m Meter, h Hours, now time.Time, day, month [2]time.Time) (*providers.Usage, error) {
	window := func(w [2]time.Time) (*providers.UsageWindow, error) {
		out := &providers.UsageWindow{Start: w[0], End: w[1]}
		for _, q := range m.Quantities() {
			sum := new(big.Rat)
			for hour, v := range h[q.Name] {
				if v == nil || v.Sign() < 0 {
					return nil, Invalidf("%s: %s for the hour of %s is %v, want at least zero", m.Source(), q.Name, hour.UTC().Format(time.RFC3339), v)
				}
				if !hour.Before(w[0]) && hour.Before(w[1]) {
					sum.Add(sum, v)
				}
			}
			q.Value = sum
			out.Quantities = append(out.Quantities, q)
		}
		return out, nil
	}
	d, err := window(day)
	if err != nil {
		return nil, err
	}
	mo, err := window(month)
	if err != nil {
		return nil, err
	}
	return &providers.Usage{Source: m.Source(), MeasuredAt: now, LastDay: d, MonthToDate: mo}, nil
}

// Run reads every Interval, and a newly asked-about load balancer at once,
// until ctx ends. It has the shape of a manager.RunnableFunc body.
func (t *Tracker) Run(ctx context.Context) error {
	tick := time.NewTicker(t.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.Refresh(ctx, false)
		case <-t.kick:
			t.Refresh(ctx, true)
		}
	}
}

// Condition returns the UsageMeasured condition for the outcome of
// Tracker.Usage (and of pricing it, priceErr): True Measured after a good
// reading; Unknown UsagePending before the first; False with the reason
// otherwise, saying whether the last good reading is kept.
func Condition(u *providers.Usage, err error, generation int64) metav1.Condition {
	c := metav1.Condition{Type: ConditionType, ObservedGeneration: generation}
	switch {
	case err == nil && u != nil:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonMeasured
		c.Message = fmt.Sprintf("Usage read from %s at %s", u.Source, u.MeasuredAt.UTC().Format(time.RFC3339))
		return c
	case err == nil:
		err = errors.New("no usage reading")
	}
	c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonOf(err), err.Error()
	if c.Reason == ReasonPending {
		c.Status = metav1.ConditionUnknown
	}
	if u != nil {
		c.Message += fmt.Sprintf("; keeping the usage read at %s", u.MeasuredAt.UTC().Format(time.RFC3339))
	}
	return c
}

// Since narrows a reading to what a load balancer created at created can
// have used: each period starts no earlier than created's hour, so that a
// young load balancer's hourly rate is its usage over the hours it
// existed, not diluted over a day. A reading with no whole hour since
// created is a ReasonPending *Error: the estimate stands until one is.
func Since(u *providers.Usage, created time.Time) (*providers.Usage, error) {
	if u == nil || created.IsZero() {
		return u, nil
	}
	from := created.UTC().Truncate(time.Hour)
	out := *u
	clip := func(w *providers.UsageWindow) *providers.UsageWindow {
		if w == nil || !w.Start.Before(from) {
			return w
		}
		c := *w
		c.Start = from
		return &c
	}
	out.LastDay, out.MonthToDate = clip(u.LastDay), clip(u.MonthToDate)
	if out.LastDay != nil && !out.LastDay.Start.Before(out.LastDay.End) {
		return nil, &Error{Reason: ReasonPending, Message: fmt.Sprintf("no whole hour of usage measured since the load balancer was created at %s", created.UTC().Format(time.RFC3339))}
	}
	if out.MonthToDate != nil && !out.MonthToDate.Start.Before(out.MonthToDate.End) {
		out.MonthToDate = nil
	}
	return &out, nil
}
