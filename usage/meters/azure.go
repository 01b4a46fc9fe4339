package meters

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
)

// AzureMetricsAPI is the subset of Azure Monitor's metrics API used.
type AzureMetricsAPI interface {
	List(ctx context.Context, resourceURI string, options *armmonitor.MetricsClientListOptions) (armmonitor.MetricsClientListResponse, error)
}

var _ AzureMetricsAPI = (*armmonitor.MetricsClient)(nil)

// AzureStandardLB meters kind azure-standard-lb from Azure Monitor: the
// load balancer's ByteCount ("Total number of Bytes transmitted within
// time period", both directions), aggregation Total per hour, split by
// the dimension FrontendIPAddress, so that each Service of a shared load
// balancer gets the bytes of its own frontend
// (https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-standard-diagnostics).
// They are "dataProcessed" in GB, priced at the price list's perGB
// "data-processed" (Azure bills "Data Processed" per GB; the embedded
// catalog carries $0.005, a live price or the price ConfigMap may replace it).
type AzureStandardLB struct {
	API AzureMetricsAPI
}

var _ usage.Meter = (*AzureStandardLB)(nil)

// NewAzureStandardLB builds the meter (subscription from the meter ids).
func NewAzureStandardLB(subscriptionID string, cred azcore.TokenCredential, opts *arm.ClientOptions) (*AzureStandardLB, error) {
	c, err := armmonitor.NewMetricsClient(subscriptionID, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("azure monitor client: %w", err)
	}
	return &AzureStandardLB{API: c}, nil
}

// Kind implements usage.Meter.
func (m *AzureStandardLB) Kind() string { return "azure-standard-lb" }

// Source implements usage.Meter.
func (m *AzureStandardLB) Source() string {
	return "azure-monitor:Microsoft.Network/loadBalancers/ByteCount"
}

// Quantities implements usage.Meter.
func (m *AzureStandardLB) Quantities() []providers.UsageQuantity {
	return []providers.UsageQuantity{{Name: "dataProcessed", Unit: providers.UnitGB}}
}

// azureMeterID is CostInputs.MeterID of an Azure Service:
// <load balancer resource ID>#<frontend IP address>.
var azureMeterID = regexp.MustCompile(`^(/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}/providers/Microsoft\.Network/loadBalancers/[-\w._]{1,80})#([0-9a-fA-F.:]{2,45})$`)

// ParseAzureMeterID splits an Azure meter id into the load balancer's
// resource ID and the frontend address.
func ParseAzureMeterID(id string) (string, netip.Addr, error) {
	m := azureMeterID.FindStringSubmatch(id)
	if m == nil {
		return "", netip.Addr{}, fmt.Errorf("%q is not <load balancer resource ID>#<frontend IP>", id)
	}
	ip, err := netip.ParseAddr(m[2])
	if err != nil || ip.Zone() != "" {
		return "", netip.Addr{}, fmt.Errorf("%q: frontend %q is not an IP address", id, m[2])
	}
	return m[1], ip, nil
}

// frontendsPerRequest bounds the or-list of one $filter.
const frontendsPerRequest = 10

// Measure implements usage.Meter.
func (m *AzureStandardLB) Measure(ctx context.Context, _ string, ids []string, start, end time.Time) (map[string]usage.Hours, map[string]error, error) {
	hours, bad := map[string]usage.Hours{}, map[string]error{}
	byLB := map[string]map[string]string{} // lb -> frontend IP -> meter id
	for _, id := range ids {
		lb, ip, err := ParseAzureMeterID(id)
		if err != nil {
			bad[id] = usage.Invalidf("%v", err)
			continue
		}
		if byLB[lb] == nil {
			byLB[lb] = map[string]string{}
		}
		byLB[lb][ip.String()] = id
		hours[id] = usage.Hours{"dataProcessed": map[time.Time]*big.Rat{}}
	}
	lbs := make([]string, 0, len(byLB))
	for lb := range byLB {
		lbs = append(lbs, lb)
	}
	sort.Strings(lbs)
	for _, lb := range lbs {
		ips := make([]string, 0, len(byLB[lb]))
		for ip := range byLB[lb] {
			ips = append(ips, ip)
		}
		sort.Strings(ips)
		for i := 0; i < len(ips); i += frontendsPerRequest {
			batch := ips[i:min(i+frontendsPerRequest, len(ips))]
			if err := m.list(ctx, lb, batch, start, end, byLB[lb], hours, bad); err != nil {
				return nil, nil, err
			}
		}
	}
	for id := range bad {
		delete(hours, id)
	}
	return hours, bad, nil
}

func (m *AzureStandardLB) list(ctx context.Context, lb string, ips []string, start, end time.Time, owner map[string]string, hours map[string]usage.Hours, bad map[string]error) error {
	terms := make([]string, len(ips))
	for i, ip := range ips {
		terms[i] = "FrontendIPAddress eq '" + ip + "'"
	}
	resp, err := m.API.List(ctx, lb, &armmonitor.MetricsClientListOptions{
		Metricnames:     to.Ptr("ByteCount"),
		Metricnamespace: to.Ptr("Microsoft.Network/loadBalancers"),
		Aggregation:     to.Ptr("Total"),
		Interval:        to.Ptr("PT1H"),
		Timespan:        to.Ptr(start.UTC().Format(time.RFC3339) + "/" + end.UTC().Format(time.RFC3339)),
		Filter:          to.Ptr(strings.Join(terms, " or ")),
		// "top ... Defaults to 10": one series per frontend asked.
		Top: to.Ptr(int32(len(ips))),
	})
	if err != nil {
		return fmt.Errorf("reading Azure Monitor metrics of %s: %w", lb, err)
	}
	for _, metric := range resp.Value {
		if metric == nil {
			continue
		}
		if code := deref(metric.ErrorCode); code != "" && code != "Success" {
			for _, ip := range ips {
				bad[owner[ip]] = usage.Invalidf("Azure Monitor ByteCount of %s: %s %s", lb, code, deref(metric.ErrorMessage))
			}
			return nil
		}
		for _, ts := range metric.Timeseries {
			if ts == nil {
				continue
			}
			ip := ""
			for _, md := range ts.Metadatavalues {
				if md != nil && md.Name != nil && strings.EqualFold(deref(md.Name.Value), "FrontendIPAddress") {
					ip = deref(md.Value)
				}
			}
			id, ok := owner[ip]
			if !ok {
				return usage.Invalidf("Azure Monitor answered for frontend %q of %s, which was not asked", ip, lb)
			}
			for _, d := range ts.Data {
				if d == nil || d.Total == nil {
					continue // no data in that hour
				}
				hour, gb, err := azurePoint(d, start, end)
				if err != nil {
					bad[id] = err
					break
				}
				hours[id]["dataProcessed"][hour] = gb
			}
		}
	}
	return nil
}

func azurePoint(d *armmonitor.MetricValue, start, end time.Time) (time.Time, *big.Rat, error) {
	if d.TimeStamp == nil {
		return time.Time{}, nil, usage.Invalidf("Azure Monitor: a value without a timestamp")
	}
	hour := d.TimeStamp.UTC()
	if !hour.Equal(hour.Truncate(time.Hour)) || hour.Before(start) || !hour.Before(end) {
		return time.Time{}, nil, usage.Invalidf("Azure Monitor: value at %s is not a whole hour in %s to %s", hour.Format(time.RFC3339), start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	v := *d.Total
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return time.Time{}, nil, usage.Invalidf("Azure Monitor: %v bytes in the hour of %s", v, hour.Format(time.RFC3339))
	}
	q, ok := new(big.Rat).SetString(strconv.FormatFloat(v, 'f', -1, 64))
	if !ok {
		return time.Time{}, nil, usage.Invalidf("Azure Monitor: value %v", v)
	}
	return hour, q.Quo(q, big.NewRat(bytesPerGB, 1)), nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
