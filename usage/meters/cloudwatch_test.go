package meters_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/usage"
	"github.com/portico-lb/portico/usage/meters"
)

const region = "eu-west-1"

func arn(name, id string) string {
	return "arn:aws:elasticloadbalancing:" + region + ":123456789012:loadbalancer/net/" + name + "/" + id
}

func newMeter(t *testing.T) (*awsfake.CloudWatch, *meters.AWSNLB) {
	t.Helper()
	cw := awsfake.NewCloudWatch()
	t.Cleanup(cw.Close)
	return cw, meters.NewAWSNLB(cw.SDKConfig(region, awsfake.SDKOptions{}), "")
}

var (
	start = time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	end   = start.Add(3 * time.Hour)
)

// putMinutes publishes one value a minute for the hour starting at hour,
// as the NLB does.
func putMinutes(cw *awsfake.CloudWatch, metric, dim string, hour time.Time, value func(minute int) float64) {
	for m := 0; m < 60; m++ {
		cw.Put("AWS/NetworkELB", metric, map[string]string{"LoadBalancer": dim}, hour.Add(time.Duration(m)*time.Minute), value(m))
	}
}

func TestAWSNLBReadsHourlyNLCUsAndProcessedBytes(t *testing.T) {
	cw, m := newMeter(t)
	m.MaxDatapoints = 2 // four values per load balancer: paged
	a, b := arn("web", "50dc6c495c0c9188"), arn("api", "0123456789abcdef")
	// web: 0.5 NLCU on average in the first hour (0 and 1 alternating),
	// 2 in the third; 1.5 GB in the first hour.
	putMinutes(cw, "ConsumedLCUs", "net/web/50dc6c495c0c9188", start, func(m int) float64 { return float64(m % 2) })
	putMinutes(cw, "ConsumedLCUs", "net/web/50dc6c495c0c9188", start.Add(2*time.Hour), func(int) float64 { return 2 })
	putMinutes(cw, "ProcessedBytes", "net/web/50dc6c495c0c9188", start, func(int) float64 { return 25_000_000 })
	// Another NLB's traffic and data outside the window count for nothing.
	putMinutes(cw, "ConsumedLCUs", "net/other/ffffffffffffffff", start, func(int) float64 { return 100 })
	putMinutes(cw, "ConsumedLCUs", "net/web/50dc6c495c0c9188", end, func(int) float64 { return 100 })

	hours, bad, err := m.Measure(context.Background(), region, []string{a, b, "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/x/1"}, start, end)
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	if len(bad) != 1 {
		t.Errorf("bad = %v; want only the Application Load Balancer ARN", bad)
	}
	want := map[string]string{
		"nlcus@0": "1/2", "nlcus@2": "2", "processedBytes@0": "3/2",
	}
	got := map[string]string{}
	for q, byHour := range hours[a] {
		for h, v := range byHour {
			got[fmt.Sprintf("%s@%d", q, int(h.Sub(start)/time.Hour))] = v.RatString()
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("web hours = %v, want %v", got, want)
	}
	if len(hours[b]["nlcus"]) != 0 || len(hours[b]["processedBytes"]) != 0 {
		t.Errorf("api had no traffic, got %v", hours[b])
	}
	calls := cw.Calls()
	if len(calls) < 2 || !calls[1].HasToken {
		t.Errorf("calls %+v; want pages followed with NextToken", calls)
	}
}

func TestAWSNLBSplitsAtFiveHundredQueries(t *testing.T) {
	cw, m := newMeter(t)
	var ids []string
	for i := range 260 {
		ids = append(ids, arn(fmt.Sprintf("lb%d", i), fmt.Sprintf("%016x", i)))
	}
	if _, _, err := m.Measure(context.Background(), region, ids, start, end); err != nil {
		t.Fatalf("Measure: %v", err)
	}
	var queries []int
	for _, c := range cw.Calls() {
		queries = append(queries, c.Queries)
	}
	if fmt.Sprint(queries) != "[500 20]" {
		t.Errorf("queries per call %v, want [500 20]", queries)
	}
}

func TestAWSNLBFailures(t *testing.T) {
	t.Run("not permitted is an error of the whole reading", func(t *testing.T) {
		cw, m := newMeter(t)
		cw.Deny(true)
		_, _, err := m.Measure(context.Background(), region, []string{arn("web", "1")}, start, end)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
			t.Fatalf("err = %v, want AccessDenied", err)
		}
		if usage.ReasonOf(err) != usage.ReasonUnavailable {
			t.Errorf("reason %s, want %s", usage.ReasonOf(err), usage.ReasonUnavailable)
		}
	})
	t.Run("one throttled attempt is retried", func(t *testing.T) {
		cw, m := newMeter(t)
		cw.Faults().Add(fault.Rule{Kind: fault.Throttle, Times: 1})
		if _, _, err := m.Measure(context.Background(), region, []string{arn("web", "1")}, start, end); err != nil {
			t.Fatalf("Measure: %v", err)
		}
	})
	t.Run("another region is refused", func(t *testing.T) {
		_, m := newMeter(t)
		if _, _, err := m.Measure(context.Background(), "us-east-1", []string{arn("web", "1")}, start, end); err == nil {
			t.Fatal("measured a load balancer of another region")
		}
	})
}

// The fake refuses what CloudWatch refuses, through the real client.
func TestCloudWatchFakeRules(t *testing.T) {
	cw := awsfake.NewCloudWatch()
	defer cw.Close()
	client := cloudwatch.NewFromConfig(cw.SDKConfig(region, awsfake.SDKOptions{MaxAttempts: 1}))
	query := func(id string, period int32) cwtypes.MetricDataQuery {
		return cwtypes.MetricDataQuery{Id: aws.String(id), MetricStat: &cwtypes.MetricStat{
			Metric: &cwtypes.Metric{Namespace: aws.String("AWS/NetworkELB"), MetricName: aws.String("ConsumedLCUs")},
			Period: aws.Int32(period), Stat: aws.String("Sum")}}
	}
	many := make([]cwtypes.MetricDataQuery, 501)
	for i := range many {
		many[i] = query(fmt.Sprintf("q%d", i), 60)
	}
	recent := time.Now().Truncate(time.Hour).Add(-2 * time.Hour)
	for _, tc := range []struct {
		name string
		in   cloudwatch.GetMetricDataInput
		code string
	}{
		{"id must start with a lowercase letter", cloudwatch.GetMetricDataInput{MetricDataQueries: []cwtypes.MetricDataQuery{query("L0", 60)}}, "ValidationError"},
		{"ids are unique", cloudwatch.GetMetricDataInput{MetricDataQueries: []cwtypes.MetricDataQuery{query("a", 60), query("a", 60)}}, "ValidationError"},
		{"period is a multiple of 60", cloudwatch.GetMetricDataInput{MetricDataQueries: []cwtypes.MetricDataQuery{query("a", 90)}}, "ValidationError"},
		{"at most 500 queries", cloudwatch.GetMetricDataInput{MetricDataQueries: many}, "ValidationError"},
		{"start before end", cloudwatch.GetMetricDataInput{MetricDataQueries: []cwtypes.MetricDataQuery{query("a", 60)}, StartTime: aws.Time(recent.Add(time.Hour)), EndTime: aws.Time(recent)}, "ValidationError"},
		{"a period of 60 s is too fine for data over 15 days old", cloudwatch.GetMetricDataInput{MetricDataQueries: []cwtypes.MetricDataQuery{query("a", 60)}, StartTime: aws.Time(recent.Add(-20 * 24 * time.Hour))}, "ValidationError"},
		{"an unknown NextToken", cloudwatch.GetMetricDataInput{MetricDataQueries: []cwtypes.MetricDataQuery{query("a", 60)}, NextToken: aws.String("bogus")}, "InvalidNextToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if in.StartTime == nil {
				in.StartTime = aws.Time(recent)
			}
			if in.EndTime == nil {
				in.EndTime = aws.Time(recent.Add(time.Hour))
			}
			_, err := client.GetMetricData(context.Background(), &in)
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
		})
	}
	// The typed error for a bad token, as the SDK models it.
	_, err := client.GetMetricData(context.Background(), &cloudwatch.GetMetricDataInput{
		MetricDataQueries: []cwtypes.MetricDataQuery{query("a", 60)}, StartTime: aws.Time(recent), EndTime: aws.Time(recent.Add(time.Hour)), NextToken: aws.String("bogus")})
	var bad *cwtypes.InvalidNextToken
	if !errors.As(err, &bad) {
		t.Errorf("err = %T %v, want *types.InvalidNextToken", err, err)
	}
}

func TestNLBDimension(t *testing.T) {
	for in, want := range map[string]string{
		arn("web", "50dc6c495c0c9188"): "net/web/50dc6c495c0c9188",
		"arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:loadbalancer/net/a-b/1": "net/a-b/1",
		"arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/web/1":     "",
		"arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/-web/1":    "",
		"net/web/1": "",
		"":          "",
	} {
		got, err := meters.NLBDimension(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("NLBDimension(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
