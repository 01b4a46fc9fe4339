package meters

import (
	"context"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	monitoring "google.golang.org/api/monitoring/v3"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
)

// GCP metric and monitored resource of an external passthrough Network Load
// Balancer with a backend service, the kind Portico builds
// (https://cloud.google.com/monitoring/api/metrics_gcp#gcp-loadbalancing):
// "l3/external/ingress_bytes_count ... DELTA, INT64, By ... The number of
// bytes sent from the client to the backend of the external network load
// balancer".
const (
	gcpIngressBytes = "loadbalancing.googleapis.com/l3/external/ingress_bytes_count"
	gcpRuleResource = "loadbalancing.googleapis.com/ExternalNetworkLoadBalancerRule"
	// rulesPerRequest bounds the one_of list of one filter.
	rulesPerRequest = 40
)

// GCPForwardingRule meters kind gcp-forwarding-rule from Cloud Monitoring:
// the bytes clients sent through the load balancer's forwarding rules,
// summed per hour, as "dataProcessed" in GB. They are priced at the price
// list's perGB "data-processed": the embedded catalog's (GCP's $0.008 per
// GiB, converted to GB), a live price (--live-prices) or the price
// ConfigMap's (a quantity without a price is UnitNotPriced, never free).
type GCPForwardingRule struct {
	Service *monitoring.Service
	// PageSize of timeSeries.list; zero leaves the API's default. Tests
	// set it small to exercise paging.
	PageSize int64
}

var _ usage.Meter = (*GCPForwardingRule)(nil)

// NewGCPForwardingRule builds the meter with the default credentials and
// opts (option.WithEndpoint for another endpoint).
func NewGCPForwardingRule(ctx context.Context, opts ...option.ClientOption) (*GCPForwardingRule, error) {
	svc, err := monitoring.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud monitoring client: %w", err)
	}
	return &GCPForwardingRule{Service: svc}, nil
}

// Kind implements usage.Meter.
func (m *GCPForwardingRule) Kind() string { return "gcp-forwarding-rule" }

// Source implements usage.Meter.
func (m *GCPForwardingRule) Source() string { return "cloud-monitoring:" + gcpIngressBytes }

// Quantities implements usage.Meter.
func (m *GCPForwardingRule) Quantities() []providers.UsageQuantity {
	return []providers.UsageQuantity{{Name: "dataProcessed", Unit: providers.UnitGB}}
}

// ruleMeterID is CostInputs.MeterID of a GCP load balancer: its forwarding
// rules, projects/<project>/regions/<region>/forwardingRules/<name>[,<name>].
// Names are RFC 1035 labels of at most 63 characters
// (https://cloud.google.com/compute/docs/naming-resources#resource-name-format);
// project IDs 6 to 30 lowercase letters, digits and hyphens.
var ruleMeterID = regexp.MustCompile(`^projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/regions/([a-z]+-[a-z]+[0-9]+)/forwardingRules/([a-z]([-a-z0-9]{0,61}[a-z0-9])?(,[a-z]([-a-z0-9]{0,61}[a-z0-9])?)*)$`)

// ParseRuleMeterID splits a GCP meter id into project, region and rule names.
func ParseRuleMeterID(id string) (project, region string, rules []string, err error) {
	m := ruleMeterID.FindStringSubmatch(id)
	if m == nil {
		return "", "", nil, fmt.Errorf("%q is not projects/<project>/regions/<region>/forwardingRules/<name>[,<name>]", id)
	}
	rules = strings.Split(m[3], ",")
	if len(rules) > 8 {
		return "", "", nil, fmt.Errorf("%q names %d forwarding rules, more than a load balancer has", id, len(rules))
	}
	return m[1], m[2], rules, nil
}

// Measure implements usage.Meter.
func (m *GCPForwardingRule) Measure(ctx context.Context, region string, ids []string, start, end time.Time) (map[string]usage.Hours, map[string]error, error) {
	hours, bad := map[string]usage.Hours{}, map[string]error{}
	type rule struct{ project, name string }
	owner := map[rule]string{}
	byProject := map[string][]string{}
	for _, id := range ids {
		project, r, names, err := ParseRuleMeterID(id)
		if err == nil && r != region {
			err = fmt.Errorf("%s is in region %s, not %s", id, r, region)
		}
		if err != nil {
			bad[id] = usage.Invalidf("%v", err)
			continue
		}
		for _, n := range names {
			owner[rule{project, n}] = id
			byProject[project] = append(byProject[project], n)
		}
		hours[id] = usage.Hours{"dataProcessed": map[time.Time]*big.Rat{}}
	}
	projects := make([]string, 0, len(byProject))
	for p := range byProject {
		projects = append(projects, p)
	}
	sort.Strings(projects)
	for _, project := range projects {
		names := byProject[project]
		for i := 0; i < len(names); i += rulesPerRequest {
			batch := names[i:min(i+rulesPerRequest, len(names))]
			err := m.list(ctx, project, region, batch, start, end, func(name string, hour time.Time, gb *big.Rat) error {
				id, ok := owner[rule{project, name}]
				if !ok {
					return usage.Invalidf("Cloud Monitoring answered for forwarding rule %q, which was not asked", name)
				}
				if bad[id] != nil {
					return nil
				}
				h := hours[id]["dataProcessed"]
				if prev, ok := h[hour]; ok {
					gb = new(big.Rat).Add(prev, gb) // the load balancer's other rule
				}
				h[hour] = gb
				return nil
			})
			if err != nil {
				return nil, nil, err
			}
		}
	}
	for id := range bad {
		delete(hours, id)
	}
	return hours, bad, nil
}

// list pages through one timeSeries.list: hourly sums per forwarding rule.
func (m *GCPForwardingRule) list(ctx context.Context, project, region string, rules []string, start, end time.Time,
	add func(name string, hour time.Time, gb *big.Rat) error) error {
	quoted := make([]string, len(rules))
	for i, r := range rules {
		quoted[i] = strconv.Quote(r)
	}
	filter := fmt.Sprintf(`metric.type = %q AND resource.type = %q AND resource.labels.region = %q AND resource.labels.forwarding_rule_name = one_of(%s)`,
		gcpIngressBytes, gcpRuleResource, region, strings.Join(quoted, ", "))
	call := m.Service.Projects.TimeSeries.List("projects/" + project).Context(ctx).
		Filter(filter).
		IntervalStartTime(start.UTC().Format(time.RFC3339)).
		IntervalEndTime(end.UTC().Format(time.RFC3339)).
		AggregationAlignmentPeriod("3600s").
		AggregationPerSeriesAligner("ALIGN_SUM").
		AggregationCrossSeriesReducer("REDUCE_SUM").
		AggregationGroupByFields("resource.label.forwarding_rule_name")
	if m.PageSize > 0 {
		call = call.PageSize(m.PageSize)
	}
	pages := 0
	err := call.Pages(ctx, func(r *monitoring.ListTimeSeriesResponse) error {
		if pages++; pages > 10_000 {
			return fmt.Errorf("reading Cloud Monitoring: more than %d pages; giving up", pages-1)
		}
		for _, ts := range r.TimeSeries {
			if ts == nil || ts.Resource == nil {
				return usage.Invalidf("Cloud Monitoring: a time series without its resource")
			}
			name := ts.Resource.Labels["forwarding_rule_name"]
			for _, p := range ts.Points {
				hour, gb, err := gcpPoint(p, start, end)
				if err != nil {
					return err
				}
				if err := add(name, hour, gb); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading Cloud Monitoring timeSeries.list in %s: %w", project, err)
	}
	return nil
}

// gcpPoint reads one aligned point: its hour (the interval's start, a whole
// hour in [start, end)) and its bytes in GB.
func gcpPoint(p *monitoring.Point, start, end time.Time) (time.Time, *big.Rat, error) {
	if p == nil || p.Interval == nil || p.Value == nil || p.Value.Int64Value == nil {
		return time.Time{}, nil, usage.Invalidf("Cloud Monitoring: a point without an interval or an INT64 value")
	}
	e, err := time.Parse(time.RFC3339Nano, p.Interval.EndTime)
	if err != nil {
		return time.Time{}, nil, usage.Invalidf("Cloud Monitoring: point end time %q: %v", p.Interval.EndTime, err)
	}
	hour := e.UTC().Add(-time.Hour)
	if !hour.Equal(hour.Truncate(time.Hour)) || hour.Before(start) || !hour.Before(end) {
		return time.Time{}, nil, usage.Invalidf("Cloud Monitoring: point ending %s is not a whole hour in %s to %s", p.Interval.EndTime, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	v := *p.Value.Int64Value
	if v < 0 {
		return time.Time{}, nil, usage.Invalidf("Cloud Monitoring: %d bytes in the hour of %s", v, hour.Format(time.RFC3339))
	}
	return hour, big.NewRat(v, bytesPerGB), nil
}
