package meters_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
	"github.com/portico-lb/portico/usage"
	"github.com/portico-lb/portico/usage/meters"
)

const (
	gcpProject = "shop-prod-1"
	gcpRegion  = "europe-west1"
	ingress    = "loadbalancing.googleapis.com/l3/external/ingress_bytes_count"
	ruleType   = "loadbalancing.googleapis.com/ExternalNetworkLoadBalancerRule"
)

func newGCPMeter(t *testing.T) (*gcpfake.Monitoring, *meters.GCPForwardingRule) {
	t.Helper()
	mon := gcpfake.NewMonitoring()
	t.Cleanup(mon.Close)
	m, err := meters.NewGCPForwardingRule(context.Background(), option.WithEndpoint(mon.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return mon, m
}

func putBytes(mon *gcpfake.Monitoring, rule string, hour time.Time, perMinute int64) {
	for m := 1; m <= 60; m++ {
		mon.Put(ingress, ruleType, map[string]string{"project_id": gcpProject, "region": gcpRegion, "forwarding_rule_name": rule}, hour.Add(time.Duration(m)*time.Minute-time.Second), perMinute)
	}
}

func TestGCPForwardingRuleSumsBothRulesPerHour(t *testing.T) {
	mon, m := newGCPMeter(t)
	m.PageSize = 1
	web := "projects/" + gcpProject + "/regions/" + gcpRegion + "/forwardingRules/portico-aaaa-tcp,portico-aaaa-udp"
	db := "projects/" + gcpProject + "/regions/" + gcpRegion + "/forwardingRules/portico-bbbb-tcp"
	putBytes(mon, "portico-aaaa-tcp", start, 10_000_000)         // 0.6 GB
	putBytes(mon, "portico-aaaa-udp", start, 5_000_000)          // 0.3 GB
	putBytes(mon, "portico-aaaa-tcp", start.Add(2*time.Hour), 1) // 60 bytes
	putBytes(mon, "portico-bbbb-tcp", start.Add(time.Hour), 50_000_000)
	putBytes(mon, "portico-other-tcp", start, 99_000_000) // not asked
	putBytes(mon, "portico-aaaa-tcp", end, 99_000_000)    // after the window

	hours, bad, err := m.Measure(context.Background(), gcpRegion, []string{web, db, "projects/shop-prod-1/regions/us-east1/forwardingRules/x"}, start, end)
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if len(bad) != 1 {
		t.Errorf("bad = %v, want only the rule of another region", bad)
	}
	got := map[string]string{}
	for id, h := range hours {
		for hour, v := range h["dataProcessed"] {
			got[fmt.Sprintf("%s@%d", id[len(id)-4:], int(hour.Sub(start)/time.Hour))] = v.RatString()
		}
	}
	want := map[string]string{"-udp@0": "9/10", "-udp@2": "3/50000000", "-tcp@1": "3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("hours = %v, want %v", got, want)
	}
	calls := mon.Calls()
	if len(calls) < 2 || !calls[1].HasToken || calls[0].Project != gcpProject {
		t.Errorf("calls %+v; want pages followed with pageToken", calls)
	}
}

func TestGCPForwardingRuleFailures(t *testing.T) {
	id := "projects/" + gcpProject + "/regions/" + gcpRegion + "/forwardingRules/portico-aaaa-tcp"
	t.Run("permission denied", func(t *testing.T) {
		mon, m := newGCPMeter(t)
		mon.Deny(true)
		_, _, err := m.Measure(context.Background(), gcpRegion, []string{id}, start, end)
		var ge *googleapi.Error
		if !errors.As(err, &ge) || ge.Code != http.StatusForbidden || usage.ReasonOf(err) != usage.ReasonUnavailable {
			t.Fatalf("err = %v, want a 403 as UsageMetricsUnavailable", err)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		mon, m := newGCPMeter(t)
		mon.Faults().Add(fault.Rule{Kind: fault.Unavailable, Times: -1})
		if _, _, err := m.Measure(context.Background(), gcpRegion, []string{id}, start, end); err == nil {
			t.Fatal("no error from an unavailable API")
		}
	})
}

// The fake refuses what Cloud Monitoring refuses, through the real client.
func TestMonitoringFakeRules(t *testing.T) {
	_, m := newGCPMeter(t)
	list := func(filter, period string, s, e time.Time) error {
		call := m.Service.Projects.TimeSeries.List("projects/" + gcpProject).Filter(filter).
			IntervalStartTime(s.Format(time.RFC3339)).IntervalEndTime(e.Format(time.RFC3339)).
			AggregationPerSeriesAligner("ALIGN_SUM")
		if period != "" {
			call = call.AggregationAlignmentPeriod(period)
		}
		_, err := call.Do()
		return err
	}
	metric := `metric.type = "` + ingress + `"`
	for _, tc := range []struct {
		name, filter, period string
		s, e                 time.Time
	}{
		{"a filter names one metric type", `resource.type = "` + ruleType + `"`, "3600s", start, end},
		{"alignment period at least 60 s", metric, "30s", start, end},
		{"an aligner needs an alignment period", metric, "", start, end},
		{"start not after end", metric, "3600s", end, start},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ge *googleapi.Error
			if err := list(tc.filter, tc.period, tc.s, tc.e); !errors.As(err, &ge) || ge.Code != http.StatusBadRequest {
				t.Fatalf("err = %v, want 400 INVALID_ARGUMENT", err)
			}
		})
	}
	if err := list(metric, "3600s", start, end); err != nil {
		t.Errorf("a valid request failed: %v", err)
	}
}

func TestParseRuleMeterID(t *testing.T) {
	for in, ok := range map[string]bool{
		"projects/shop-prod-1/regions/europe-west1/forwardingRules/portico-a-tcp":               true,
		"projects/shop-prod-1/regions/europe-west1/forwardingRules/portico-a-tcp,portico-a-udp": true,
		"projects/shop-prod-1/regions/europe-west1/forwardingRules/":                            false,
		"projects/shop-prod-1/regions/europe-west1/forwardingRules/a,,b":                        false,
		"projects/Shop/regions/europe-west1/forwardingRules/a":                                  false,
		`projects/shop-prod-1/regions/europe-west1/forwardingRules/a") OR metric.type = ("x`:    false,
	} {
		if _, _, _, err := meters.ParseRuleMeterID(in); (err == nil) != ok {
			t.Errorf("ParseRuleMeterID(%q): %v, want ok %v", in, err, ok)
		}
	}
}

// FuzzParseRuleMeterID: a meter id goes into a Cloud Monitoring filter, so
// nothing but rule names may come out of it.
func FuzzParseRuleMeterID(f *testing.F) {
	f.Add("projects/shop-prod-1/regions/europe-west1/forwardingRules/portico-a-tcp,portico-a-udp")
	f.Fuzz(func(t *testing.T, s string) {
		project, region, rules, err := meters.ParseRuleMeterID(s)
		if err != nil {
			return
		}
		for _, part := range append([]string{project, region}, rules...) {
			for _, r := range part {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
					t.Fatalf("ParseRuleMeterID(%q) gave %q", s, part)
				}
			}
		}
	})
}
