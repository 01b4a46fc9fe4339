package usage_test

import (
	"context"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
)

// scriptedMeter answers Measure with what the test set, and records the
// windows asked for.
type scriptedMeter struct {
	hours  map[string]usage.Hours
	bad    map[string]error
	err    error
	calls  int
	starts []time.Time
	ends   []time.Time
	ids    [][]string
}

func (m *scriptedMeter) Kind() string   { return "aws-nlb" }
func (m *scriptedMeter) Source() string { return "cloudwatch:AWS/NetworkELB" }
func (m *scriptedMeter) Quantities() []providers.UsageQuantity {
	return []providers.UsageQuantity{{Name: "nlcus", Unit: providers.UnitHours}, {Name: "processedBytes", Unit: providers.UnitGB, Included: true}}
}

func (m *scriptedMeter) Measure(_ context.Context, _ string, ids []string, start, end time.Time) (map[string]usage.Hours, map[string]error, error) {
	m.calls++
	m.starts, m.ends, m.ids = append(m.starts, start), append(m.ends, end), append(m.ids, ids)
	return m.hours, m.bad, m.err
}

func r(n, d int64) *big.Rat { return big.NewRat(n, d) }

func quantity(t *testing.T, w *providers.UsageWindow, name string) string {
	t.Helper()
	for _, q := range w.Quantities {
		if q.Name == name {
			return q.Value.RatString()
		}
	}
	t.Fatalf("no quantity %s in %+v", name, w)
	return ""
}

func TestTrackerSumsHoursIntoTheLastDayAndTheMonthToDate(t *testing.T) {
	now := time.Date(2026, 11, 3, 5, 42, 0, 0, time.UTC)
	h := func(day, hour int) time.Time { return time.Date(2026, 11, day, hour, 0, 0, 0, time.UTC) }
	m := &scriptedMeter{hours: map[string]usage.Hours{"net/a/1": {
		"nlcus": {
			h(1, 0): r(2, 1),  // month to date only
			h(2, 4): r(3, 1),  // before the last day (which starts 2 Nov 05:00)
			h(2, 5): r(1, 2),  // first hour of the last day
			h(3, 4): r(5, 4),  // last whole hour
			h(3, 5): r(99, 1), // the hour in progress: not counted
		},
		"processedBytes": {h(3, 0): r(7, 10)},
	}}}
	tr, err := usage.NewTracker(usage.Options{Meters: []usage.Meter{m}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	in := providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: "net/a/1"}

	u, err := tr.Usage(in)
	var ue *usage.Error
	if u != nil || !errors.As(err, &ue) || ue.Reason != usage.ReasonPending {
		t.Fatalf("before the first reading: %v, %v; want nil and %s", u, err, usage.ReasonPending)
	}
	if failed := tr.Refresh(context.Background(), true); len(failed) != 0 {
		t.Fatalf("Refresh: %v", failed)
	}
	if !m.starts[0].Equal(h(1, 0)) || !m.ends[0].Equal(h(3, 5)) {
		t.Errorf("measured %s to %s; want from the month's start to the current hour", m.starts[0], m.ends[0])
	}
	u, err = tr.Usage(in)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if !u.LastDay.Start.Equal(h(2, 5)) || !u.LastDay.End.Equal(h(3, 5)) || !u.MonthToDate.Start.Equal(h(1, 0)) {
		t.Errorf("windows %v-%v and %v-%v", u.LastDay.Start, u.LastDay.End, u.MonthToDate.Start, u.MonthToDate.End)
	}
	if got := quantity(t, u.LastDay, "nlcus"); got != "7/4" {
		t.Errorf("last day NLCU-hours %s, want 7/4 (0.5 + 1.25)", got)
	}
	if got := quantity(t, u.MonthToDate, "nlcus"); got != "27/4" {
		t.Errorf("month to date NLCU-hours %s, want 27/4 (2 + 3 + 0.5 + 1.25)", got)
	}
	if got := quantity(t, u.LastDay, "processedBytes"); got != "7/10" {
		t.Errorf("last day GB %s, want 7/10", got)
	}

	// The API fails: the last good reading is kept, with the failure.
	m.err = errors.New("AccessDenied: not authorized to perform cloudwatch:GetMetricData")
	tr.Refresh(context.Background(), false)
	u, err = tr.Usage(in)
	if u == nil || err == nil || usage.ReasonOf(err) != usage.ReasonUnavailable || u.Error == "" {
		t.Fatalf("after a failure: %+v, %v; want the last good usage with %s", u, err, usage.ReasonUnavailable)
	}
	if got := quantity(t, u.LastDay, "nlcus"); got != "7/4" {
		t.Errorf("kept NLCU-hours %s, want 7/4", got)
	}

	// Bad data for this load balancer: kept as well, reason UsageDataInvalid.
	m.err = nil
	m.hours["net/a/1"]["nlcus"][h(3, 1)] = r(-1, 1)
	tr.Refresh(context.Background(), false)
	u, err = tr.Usage(in)
	if u == nil || usage.ReasonOf(err) != usage.ReasonInvalid || quantity(t, u.LastDay, "nlcus") != "7/4" {
		t.Fatalf("after bad data: %+v, %v; want the last good usage with %s", u, err, usage.ReasonInvalid)
	}
}

func TestTrackerWithoutAGoodReadingHasNoUsage(t *testing.T) {
	now := time.Date(2026, 11, 3, 5, 42, 0, 0, time.UTC)
	m := &scriptedMeter{bad: map[string]error{"net/b/2": usage.Invalidf("PartialData")}}
	tr, _ := usage.NewTracker(usage.Options{Meters: []usage.Meter{m}, Now: func() time.Time { return now }})
	in := providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: "net/b/2"}
	tr.Usage(in)
	if failed := tr.Refresh(context.Background(), true); len(failed) != 1 {
		t.Errorf("failed = %v, want the one load balancer", failed)
	}
	if u, err := tr.Usage(in); u != nil || usage.ReasonOf(err) != usage.ReasonInvalid {
		t.Fatalf("%+v, %v; want no usage and %s", u, err, usage.ReasonInvalid)
	}
}

func TestTrackerAsksOncePerRegionAndForgetsDeletedLoadBalancers(t *testing.T) {
	now := time.Date(2026, 11, 3, 5, 42, 0, 0, time.UTC)
	m := &scriptedMeter{}
	tr, _ := usage.NewTracker(usage.Options{Meters: []usage.Meter{m}, Interval: time.Hour, Now: func() time.Time { return now }})
	for _, id := range []string{"net/c/3", "net/a/1", "net/b/2"} {
		tr.Usage(providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: id})
	}
	if u, err := tr.Usage(providers.CostInputs{Kind: "gcp-forwarding-rule", MeterID: "x"}); u != nil || err != nil {
		t.Errorf("a kind without a meter: %v, %v; want nothing", u, err)
	}
	tr.Refresh(context.Background(), false)
	if m.calls != 1 || len(m.ids[0]) != 3 || m.ids[0][0] != "net/a/1" {
		t.Fatalf("calls %d with %v; want one call with the three, sorted", m.calls, m.ids)
	}
	now = now.Add(4 * time.Hour)
	tr.Refresh(context.Background(), false)
	if m.calls != 1 {
		t.Errorf("load balancers nobody asked about for three intervals were read again")
	}
}

func TestSinceNarrowsPeriodsToTheLoadBalancersLife(t *testing.T) {
	end := time.Date(2026, 11, 3, 5, 0, 0, 0, time.UTC)
	u := &providers.Usage{Source: "s",
		LastDay:     &providers.UsageWindow{Start: end.Add(-24 * time.Hour), End: end},
		MonthToDate: &providers.UsageWindow{Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), End: end}}
	got, err := usage.Since(u, end.Add(-150*time.Minute)) // created 02:30
	if err != nil {
		t.Fatal(err)
	}
	if want := end.Add(-3 * time.Hour); !got.LastDay.Start.Equal(want) || !got.MonthToDate.Start.Equal(want) {
		t.Errorf("periods start %v and %v, want %v", got.LastDay.Start, got.MonthToDate.Start, want)
	}
	if !u.LastDay.Start.Equal(end.Add(-24 * time.Hour)) {
		t.Error("the tracker's reading was changed")
	}
	old, _ := usage.Since(u, end.Add(-30*24*time.Hour))
	if !old.LastDay.Start.Equal(u.LastDay.Start) || !old.MonthToDate.Start.Equal(u.MonthToDate.Start) {
		t.Error("an old load balancer's periods were narrowed")
	}
	if got, err := usage.Since(u, end.Add(10*time.Minute)); got != nil || usage.ReasonOf(err) != usage.ReasonPending {
		t.Errorf("created in the hour in progress: %+v, %v; want no usage, %s", got, err, usage.ReasonPending)
	}
}

func TestTrackerKeepsLoadBalancersAskedAboutWithinForgetAfter(t *testing.T) {
	now := time.Date(2026, 11, 3, 5, 42, 0, 0, time.UTC)
	m := &scriptedMeter{}
	tr, _ := usage.NewTracker(usage.Options{Meters: []usage.Meter{m}, Interval: time.Hour, ForgetAfter: 30 * time.Hour, Now: func() time.Time { return now }})
	tr.Usage(providers.CostInputs{Kind: "aws-nlb", Region: "us-east-1", MeterID: "net/a/1"})
	now = now.Add(24 * time.Hour) // a resync period of a day
	tr.Refresh(context.Background(), false)
	if m.calls != 1 {
		t.Errorf("a load balancer asked about a day ago was forgotten (calls %d)", m.calls)
	}
}

// recentMeter has measured only since a given hour (the local byte meter,
// whose tally starts with the operator).
type recentMeter struct {
	scriptedMeter
	since time.Time
}

func (m *recentMeter) MeasuringSince() time.Time { return m.since }

func TestTrackerStartsPeriodsWhereTheMeterBeganMeasuring(t *testing.T) {
	now := time.Date(2026, 11, 3, 5, 42, 0, 0, time.UTC)
	since := time.Date(2026, 11, 3, 2, 0, 0, 0, time.UTC)
	m := &recentMeter{scriptedMeter: scriptedMeter{hours: map[string]usage.Hours{"id": {"nlcus": {since: r(3, 1)}}}}, since: since}
	tr, err := usage.NewTracker(usage.Options{Meters: []usage.Meter{m}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	in := providers.CostInputs{Kind: "aws-nlb", MeterID: "id"}
	_, _ = tr.Usage(in)
	tr.Refresh(context.Background(), true)
	u, err := tr.Usage(in)
	if err != nil {
		t.Fatal(err)
	}
	if !u.LastDay.Start.Equal(since) || !u.MonthToDate.Start.Equal(since) {
		t.Errorf("periods start %s and %s; want %s, when the meter began: hours before are unmeasured, not idle", u.LastDay.Start, u.MonthToDate.Start, since)
	}

	// Before a whole hour was measured there is no usage yet.
	m.since = time.Date(2026, 11, 3, 6, 0, 0, 0, time.UTC)
	tr.Refresh(context.Background(), false)
	if u, err := tr.Usage(in); usage.ReasonOf(err) != usage.ReasonPending || (u != nil && u.Error == "") {
		t.Errorf("no whole hour measured: %+v, %v; want %s", u, err, usage.ReasonPending)
	}
}
