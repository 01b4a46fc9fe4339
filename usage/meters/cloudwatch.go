// Package meters holds the metrics APIs Portico reads usage from, one
// usage.Meter each. AWSNLB reads NLB capacity units and processed bytes
// from Amazon CloudWatch.
package meters

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
)

// CloudWatchAPI is the subset of the CloudWatch API used.
type CloudWatchAPI interface {
	GetMetricData(ctx context.Context, in *cloudwatch.GetMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.GetMetricDataOutput, error)
}

var _ CloudWatchAPI = (*cloudwatch.Client)(nil)

// AWSNLB meters kind aws-nlb from the AWS/NetworkELB namespace, per load
// balancer (dimension LoadBalancer=net/<name>/<id>), hour by hour:
// ConsumedLCUs (statistic Average over each hour: the NLCU-hours of that
// hour) and ProcessedBytes (Sum, reported in GB, billed through NLCUs).
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-cloudwatch-metrics.html
type AWSNLB struct {
	API CloudWatchAPI
	// Region the API client talks to; load balancers of another region
	// are refused.
	Region string
	// MaxDatapoints per GetMetricData page; zero leaves CloudWatch's
	// default (100,800). Tests set it small to exercise paging.
	MaxDatapoints int32
}

var _ usage.Meter = (*AWSNLB)(nil)

// NewAWSNLB builds the meter on the provider's SDK config; the endpoint
// follows the SDK's settings (AWS_ENDPOINT_URL_CLOUDWATCH) or endpoint
// when set.
func NewAWSNLB(cfg aws.Config, endpoint string) *AWSNLB {
	return &AWSNLB{Region: cfg.Region, API: cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})}
}

// Kind implements usage.Meter.
func (m *AWSNLB) Kind() string { return "aws-nlb" }

// Source implements usage.Meter.
func (m *AWSNLB) Source() string { return "cloudwatch:AWS/NetworkELB" }

// Quantities implements usage.Meter: "nlcus" in NLCU-hours, priced at
// the price list's NLCU-hour; "processedBytes" in GB, shown only.
func (m *AWSNLB) Quantities() []providers.UsageQuantity {
	return []providers.UsageQuantity{
		{Name: "nlcus", Unit: providers.UnitHours},
		{Name: "processedBytes", Unit: providers.UnitGB, Included: true},
	}
}

// queriesPerLB is how many MetricDataQuery one load balancer takes;
// "You can include as many as 500 MetricDataQuery structures in one
// GetMetricData operation"
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html).
const (
	queriesPerLB  = 2
	maxQueries    = 500
	lbsPerRequest = maxQueries / queriesPerLB
	hourSeconds   = 3600
	bytesPerGB    = 1_000_000_000
)

// Measure implements usage.Meter.
func (m *AWSNLB) Measure(ctx context.Context, region string, ids []string, start, end time.Time) (map[string]usage.Hours, map[string]error, error) {
	if region != m.Region {
		return nil, nil, fmt.Errorf("the CloudWatch client is for region %s, not %s", m.Region, region)
	}
	hours, bad := map[string]usage.Hours{}, map[string]error{}
	var dims []string
	var valid []string
	for _, id := range ids {
		d, err := NLBDimension(id)
		if err != nil {
			bad[id] = usage.Invalidf("%v", err)
			continue
		}
		dims, valid = append(dims, d), append(valid, id)
	}
	for i := 0; i < len(valid); i += lbsPerRequest {
		j := min(i+lbsPerRequest, len(valid))
		if err := m.measureBatch(ctx, valid[i:j], dims[i:j], start, end, hours, bad); err != nil {
			return nil, nil, err
		}
	}
	return hours, bad, nil
}

// metricOf is each query Id's metric, by its first letter: Ids "must
// start with a lowercase letter"
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDataQuery.html).
var metricOf = map[byte]struct{ metric, stat, quantity string }{
	'l': {"ConsumedLCUs", "Average", "nlcus"},
	'b': {"ProcessedBytes", "Sum", "processedBytes"},
}

func (m *AWSNLB) measureBatch(ctx context.Context, ids, dims []string, start, end time.Time, hours map[string]usage.Hours, bad map[string]error) error {
	in := &cloudwatch.GetMetricDataInput{StartTime: aws.Time(start), EndTime: aws.Time(end), ScanBy: cwtypes.ScanByTimestampAscending}
	if m.MaxDatapoints > 0 {
		in.MaxDatapoints = aws.Int32(m.MaxDatapoints)
	}
	for i, d := range dims {
		for _, letter := range []byte{'l', 'b'} {
			q := metricOf[letter]
			in.MetricDataQueries = append(in.MetricDataQueries, cwtypes.MetricDataQuery{
				Id: aws.String(string(letter) + strconv.Itoa(i)),
				MetricStat: &cwtypes.MetricStat{
					Metric: &cwtypes.Metric{Namespace: aws.String("AWS/NetworkELB"), MetricName: aws.String(q.metric),
						Dimensions: []cwtypes.Dimension{{Name: aws.String("LoadBalancer"), Value: aws.String(d)}}},
					Period: aws.Int32(hourSeconds),
					Stat:   aws.String(q.stat),
				},
			})
		}
	}
	status := map[string]cwtypes.StatusCode{}
	for page := 0; ; page++ {
		if page > 10_000 {
			return fmt.Errorf("CloudWatch GetMetricData: more than %d pages; giving up", page)
		}
		out, err := m.API.GetMetricData(ctx, in)
		if err != nil {
			return fmt.Errorf("CloudWatch GetMetricData: %w", err)
		}
		for _, r := range out.MetricDataResults {
			i, q, ok := parseQueryID(aws.ToString(r.Id), len(ids))
			if !ok {
				return usage.Invalidf("CloudWatch answered for query %q, which was not asked", aws.ToString(r.Id))
			}
			id := ids[i]
			status[aws.ToString(r.Id)] = r.StatusCode
			if bad[id] != nil {
				continue
			}
			if err := addValues(hours, id, q, r, start, end); err != nil {
				bad[id] = err
			}
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	for i, id := range ids {
		for _, letter := range []byte{'l', 'b'} {
			qid := string(letter) + strconv.Itoa(i)
			if st, ok := status[qid]; bad[id] == nil && st != cwtypes.StatusCodeComplete {
				if !ok {
					st = "no result"
				}
				bad[id] = usage.Invalidf("CloudWatch %s of %s: status %s after the last page", metricOf[letter].metric, dims[i], st)
			}
		}
	}
	return nil
}

func parseQueryID(id string, n int) (int, string, bool) {
	if len(id) < 2 {
		return 0, "", false
	}
	q, ok := metricOf[id[0]]
	if !ok {
		return 0, "", false
	}
	i, err := strconv.Atoi(id[1:])
	if err != nil || i < 0 || i >= n || strconv.Itoa(i) != id[1:] {
		return 0, "", false
	}
	return i, q.quantity, true
}

// addValues stores one result page's values: whole hours inside the
// window, finite and not negative, else the answer is bad data.
func addValues(hours map[string]usage.Hours, id, quantity string, r cwtypes.MetricDataResult, start, end time.Time) error {
	if len(r.Timestamps) != len(r.Values) {
		return usage.Invalidf("CloudWatch %s: %d timestamps for %d values", quantity, len(r.Timestamps), len(r.Values))
	}
	if hours[id] == nil {
		hours[id] = usage.Hours{}
	}
	if hours[id][quantity] == nil {
		hours[id][quantity] = map[time.Time]*big.Rat{}
	}
	for k, ts := range r.Timestamps {
		ts = ts.UTC()
		if ts.Before(start) || !ts.Before(end) || !ts.Equal(ts.Truncate(time.Hour)) {
			return usage.Invalidf("CloudWatch %s: datapoint at %s is not a whole hour in %s to %s", quantity, ts.Format(time.RFC3339), start.Format(time.RFC3339), end.Format(time.RFC3339))
		}
		v := r.Values[k]
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return usage.Invalidf("CloudWatch %s: value %v at %s", quantity, v, ts.Format(time.RFC3339))
		}
		q, ok := new(big.Rat).SetString(strconv.FormatFloat(v, 'f', -1, 64))
		if !ok {
			return usage.Invalidf("CloudWatch %s: value %v", quantity, v)
		}
		if quantity == "processedBytes" {
			q.Quo(q, big.NewRat(bytesPerGB, 1))
		}
		if _, dup := hours[id][quantity][ts]; dup {
			return usage.Invalidf("CloudWatch %s: two values for %s", quantity, ts.Format(time.RFC3339))
		}
		hours[id][quantity][ts] = q
	}
	return nil
}

// nlbARN is an NLB's ARN,
// arn:<partition>:elasticloadbalancing:<region>:<account>:loadbalancer/net/<name>/<id>;
// names are 1 to 32 letters, digits and hyphens, not starting or ending
// with a hyphen
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html).
var nlbARN = regexp.MustCompile(`^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:loadbalancer/(net/[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?/[0-9a-f]{1,32})$`)

// NLBDimension returns the LoadBalancer dimension of an NLB's CloudWatch
// metrics, net/<name>/<id>, from its ARN
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-cloudwatch-metrics.html#load-balancer-metric-dimensions).
func NLBDimension(arn string) (string, error) {
	m := nlbARN.FindStringSubmatch(arn)
	if m == nil {
		if strings.Contains(arn, ":loadbalancer/app/") {
			return "", fmt.Errorf("%q is an Application Load Balancer, not an NLB", arn)
		}
		return "", fmt.Errorf("%q is not a Network Load Balancer ARN", arn)
	}
	return m[1], nil
}
