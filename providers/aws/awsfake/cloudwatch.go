package awsfake

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/portico-lb/portico/internal/fault"
)

// CloudWatch is an in-process Amazon CloudWatch endpoint for
// GetMetricData, the one operation Portico's usage meter calls. It speaks
// the Smithy RPC v2 CBOR protocol that aws-sdk-go-v2/service/cloudwatch
// speaks since v1.53.0 (go.mod pins v1.75.7): POST
// /service/GraniteServiceVersion20100801/operation/GetMetricData with
// Smithy-Protocol: rpc-v2-cbor and a CBOR body, answered in CBOR; errors
// carry __type and, CloudWatch being awsQueryCompatible, the
// x-amzn-query-error header
// (https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html,
// https://smithy.io/2.0/aws/protocols/aws-query-protocol.html#aws-protocols-awsquerycompatible-trait).
//
// Tests store raw datapoints with Put; GetMetricData aggregates them per
// period with CloudWatch's statistics and pages with MaxDatapoints and
// NextToken. Faults come from the shared core (Faults): Throttle is
// Throttling 400, ServerError InternalServiceFault 500, Unavailable
// ServiceUnavailable 503; Deny makes every call AccessDenied 403.
type CloudWatch struct {
	server *httptest.Server
	faults *fault.Injector

	mu     sync.Mutex
	series map[string]*series
	denied bool
	calls  []CloudWatchCall
}

// CloudWatchCall is one GetMetricData request the fake answered.
type CloudWatchCall struct {
	Queries     int
	HasToken    bool
	Code        string // error code, "" for success
	AccessKeyID string
}

type series struct {
	namespace, metric string
	dims              map[string]string
	points            []datapoint
}

type datapoint struct {
	at    time.Time
	value float64
}

// NewCloudWatch starts the fake.
func NewCloudWatch() *CloudWatch {
	c := &CloudWatch{faults: fault.New(1), series: map[string]*series{}}
	c.server = httptest.NewServer(http.HandlerFunc(c.serve))
	return c
}

// URL is the endpoint to give the SDK as BaseEndpoint.
func (c *CloudWatch) URL() string { return c.server.URL }

// Close stops the server.
func (c *CloudWatch) Close() { c.server.Close() }

// Faults is the shared fault core of this fake.
func (c *CloudWatch) Faults() *fault.Injector { return c.faults }

// Deny makes every call fail as a caller without cloudwatch:GetMetricData
// would (AccessDenied, 403), or stops doing so.
func (c *CloudWatch) Deny(denied bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.denied = denied
}

// Calls returns the requests answered so far.
func (c *CloudWatch) Calls() []CloudWatchCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CloudWatchCall(nil), c.calls...)
}

// Put stores one datapoint, as a service publishing the metric would.
func (c *CloudWatch) Put(namespace, metric string, dims map[string]string, at time.Time, value float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := seriesKey(namespace, metric, dims)
	s := c.series[k]
	if s == nil {
		cp := map[string]string{}
		for n, v := range dims {
			cp[n] = v
		}
		s = &series{namespace: namespace, metric: metric, dims: cp}
		c.series[k] = s
	}
	s.points = append(s.points, datapoint{at: at.UTC(), value: value})
}

func seriesKey(namespace, metric string, dims map[string]string) string {
	names := make([]string, 0, len(dims))
	for n := range dims {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString(namespace + "\x00" + metric)
	for _, n := range names {
		b.WriteString("\x00" + n + "=" + dims[n])
	}
	return b.String()
}

// Wire shapes of GetMetricData
// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html).
type cwGetMetricDataInput struct {
	MetricDataQueries []cwQuery  `cbor:"MetricDataQueries"`
	StartTime         *time.Time `cbor:"StartTime"`
	EndTime           *time.Time `cbor:"EndTime"`
	NextToken         *string    `cbor:"NextToken"`
	ScanBy            *string    `cbor:"ScanBy"`
	MaxDatapoints     *int64     `cbor:"MaxDatapoints"`
}

type cwQuery struct {
	ID         string  `cbor:"Id"`
	MetricStat *cwStat `cbor:"MetricStat"`
	Expression *string `cbor:"Expression"`
	Label      *string `cbor:"Label"`
	ReturnData *bool   `cbor:"ReturnData"`
	Period     *int64  `cbor:"Period"`
	AccountID  *string `cbor:"AccountId"`
}

type cwStat struct {
	Metric cwMetric `cbor:"Metric"`
	Period int64    `cbor:"Period"`
	Stat   string   `cbor:"Stat"`
	Unit   *string  `cbor:"Unit"`
}

type cwMetric struct {
	Namespace  string        `cbor:"Namespace"`
	MetricName string        `cbor:"MetricName"`
	Dimensions []cwDimension `cbor:"Dimensions"`
}

type cwDimension struct {
	Name  string `cbor:"Name"`
	Value string `cbor:"Value"`
}

type cwResult struct {
	ID         string      `cbor:"Id"`
	Label      string      `cbor:"Label"`
	Timestamps []time.Time `cbor:"Timestamps"`
	Values     []float64   `cbor:"Values"`
	StatusCode string      `cbor:"StatusCode"`
}

type cwOutput struct {
	MetricDataResults []cwResult `cbor:"MetricDataResults"`
	NextToken         string     `cbor:"NextToken,omitempty"`
}

type cwError struct {
	status  int
	code    string
	message string
}

var (
	cborEnc = func() cbor.EncMode {
		m, err := cbor.EncOptions{Time: cbor.TimeUnixDynamic, TimeTag: cbor.EncTagRequired}.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	cborDec = func() cbor.DecMode {
		m, err := cbor.DecOptions{MaxArrayElements: 1 << 20, MaxMapPairs: 1 << 20}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// The operation path of GetMetricData in RPC v2
// (https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html#requests).
const cwGetMetricDataPath = "/service/GraniteServiceVersion20100801/operation/GetMetricData"

func (c *CloudWatch) serve(w http.ResponseWriter, r *http.Request) {
	call := CloudWatchCall{AccessKeyID: accessKeyID(r.Header.Get("Authorization"))}
	data, e := c.handle(r, &call)
	if e != nil {
		call.Code = e.code
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	if e != nil {
		writeCWError(w, e)
		return
	}
	w.Write(data)
}

func (c *CloudWatch) handle(r *http.Request, call *CloudWatchCall) ([]byte, *cwError) {
	// RPC v2: "requests MUST use the HTTP POST method" and "MUST contain a
	// smithy-protocol header with a value of rpc-v2-cbor".
	if r.Method != http.MethodPost || r.Header.Get("Smithy-Protocol") != "rpc-v2-cbor" {
		return nil, &cwError{http.StatusBadRequest, "UnknownOperationException", "not an RPC v2 CBOR request"}
	}
	if r.URL.Path != cwGetMetricDataPath {
		return nil, &cwError{http.StatusNotFound, "UnknownOperationException", "the fake answers GetMetricData only, not " + r.URL.Path}
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=") {
		return nil, &cwError{http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"}
	}
	req := fault.Request{Service: "cloudwatch", Op: "GetMetricData", Caller: call.AccessKeyID}
	d := c.faults.Decide(req)
	switch d.Kind {
	case fault.None:
	case fault.Throttle:
		return nil, &cwError{http.StatusBadRequest, "Throttling", "Rate exceeded"}
	case fault.ServerError:
		return nil, &cwError{http.StatusInternalServerError, "InternalServiceFault", "Internal service error"}
	case fault.Unavailable:
		return nil, &cwError{http.StatusServiceUnavailable, "ServiceUnavailable", "The request has failed due to a temporary failure of the server"}
	case fault.Slow:
		select {
		case <-time.After(d.Delay):
		case <-r.Context().Done():
		}
		return nil, &cwError{http.StatusGatewayTimeout, "RequestTimeout", "injected slow response"}
	default:
		return nil, &cwError{http.StatusBadRequest, "InjectedCrash", "the caller crashed (injected)"}
	}
	c.faults.Record(req, "")
	c.mu.Lock()
	denied := c.denied
	c.mu.Unlock()
	if denied {
		return nil, &cwError{http.StatusForbidden, "AccessDenied", "User is not authorized to perform: cloudwatch:GetMetricData"}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/cbor" {
		return nil, &cwError{http.StatusBadRequest, "SerializationException", "Content-Type " + ct + ", want application/cbor"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return nil, &cwError{http.StatusBadRequest, "SerializationException", err.Error()}
	}
	var in cwGetMetricDataInput
	if err := cborDec.Unmarshal(body, &in); err != nil {
		return nil, &cwError{http.StatusBadRequest, "SerializationException", "decoding the CBOR body: " + err.Error()}
	}
	call.Queries, call.HasToken = len(in.MetricDataQueries), in.NextToken != nil
	results, e := c.getMetricData(&in)
	if e != nil {
		return nil, e
	}
	out, e := cwPage(results, &in)
	if e != nil {
		return nil, e
	}
	data, err := cborEnc.Marshal(out)
	if err != nil {
		return nil, &cwError{http.StatusInternalServerError, "InternalServiceFault", "fake: " + err.Error()}
	}
	return data, nil
}

// CloudWatch's validation rules, from
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html,
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDataQuery.html and
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricStat.html.
var (
	// MetricDataQuery.Id: "The first character must be a lowercase
	// letter", then letters, digits and underscores, up to 255.
	cwIDPattern = regexp.MustCompile(`^[a-z][a-zA-Z0-9_]{0,254}$`)
	// MetricStat.Stat: a statistic or a percentile ("p99").
	cwStatPattern = regexp.MustCompile(`^(SampleCount|Average|Sum|Minimum|Maximum|p(\d{1,2}(\.\d{1,10})?|100))$`)
)

const (
	// "You can include as many as 500 MetricDataQuery structures in one
	// GetMetricData operation."
	cwMaxQueries = 500
	// MaxDatapoints: "If you omit this, the default of 100,800 is used."
	cwDefaultMaxDatapoints = 100800
	// Metric.Dimensions: "You can assign up to 30 dimensions to a metric."
	cwMaxDimensions = 30
)

func validation(format string, args ...any) *cwError {
	return &cwError{http.StatusBadRequest, "ValidationError", fmt.Sprintf(format, args...)}
}

func (c *CloudWatch) getMetricData(in *cwGetMetricDataInput) ([]cwResult, *cwError) {
	if n := len(in.MetricDataQueries); n == 0 || n > cwMaxQueries {
		return nil, validation("1 validation error detected: Value at 'metricDataQueries' failed to satisfy constraint: Member must have length between 1 and %d (got %d)", cwMaxQueries, n)
	}
	if in.StartTime == nil || in.EndTime == nil {
		return nil, &cwError{http.StatusBadRequest, "MissingParameter", "StartTime and EndTime are required"}
	}
	// "The value of StartTime must be earlier than the value of EndTime."
	if !in.StartTime.Before(*in.EndTime) {
		return nil, validation("The parameter StartTime must be less than the parameter EndTime.")
	}
	if in.ScanBy != nil && *in.ScanBy != "TimestampDescending" && *in.ScanBy != "TimestampAscending" {
		return nil, validation("ScanBy %q: want TimestampDescending or TimestampAscending", *in.ScanBy)
	}
	if in.MaxDatapoints != nil && *in.MaxDatapoints < 1 {
		return nil, validation("MaxDatapoints must be positive")
	}
	seen := map[string]bool{}
	var out []cwResult
	for i, q := range in.MetricDataQueries {
		if !cwIDPattern.MatchString(q.ID) {
			return nil, validation("The value %s for parameter MetricDataQueries.member.%d.Id is not valid: it must start with a lowercase letter and contain only letters, numbers and underscores", q.ID, i+1)
		}
		// "The value of Id must be unique within a single GetMetricData request."
		if seen[q.ID] {
			return nil, validation("The values for parameter id in MetricDataQueries are not unique.")
		}
		seen[q.ID] = true
		// "Within one MetricDataQuery object, you must specify either
		// Expression or MetricStat but not both."
		if (q.MetricStat == nil) == (q.Expression == nil) {
			return nil, &cwError{http.StatusBadRequest, "InvalidParameterCombination", fmt.Sprintf("MetricDataQueries.member.%d: exactly one of Expression and MetricStat must be set", i+1)}
		}
		if q.Expression != nil {
			return nil, validation("the fake does not evaluate metric math expressions")
		}
		ms := q.MetricStat
		if ms.Metric.Namespace == "" || ms.Metric.MetricName == "" {
			return nil, &cwError{http.StatusBadRequest, "MissingParameter", fmt.Sprintf("MetricDataQueries.member.%d: Namespace and MetricName are required", i+1)}
		}
		if len(ms.Metric.Dimensions) > cwMaxDimensions {
			return nil, validation("MetricDataQueries.member.%d: at most %d dimensions", i+1, cwMaxDimensions)
		}
		if !cwStatPattern.MatchString(ms.Stat) {
			return nil, validation("MetricDataQueries.member.%d.MetricStat.Stat %q is not a valid statistic", i+1, ms.Stat)
		}
		if e := checkPeriod(ms.Period, *in.StartTime, time.Now()); e != nil {
			return nil, e
		}
		dims := map[string]string{}
		for _, d := range ms.Metric.Dimensions {
			dims[d.Name] = d.Value
		}
		res := cwResult{ID: q.ID, Label: ms.Metric.MetricName, StatusCode: "Complete"}
		if q.Label != nil {
			res.Label = *q.Label
		}
		c.mu.Lock()
		s := c.series[seriesKey(ms.Metric.Namespace, ms.Metric.MetricName, dims)]
		var points []datapoint
		if s != nil {
			points = append(points, s.points...)
		}
		c.mu.Unlock()
		res.Timestamps, res.Values = aggregate(points, *in.StartTime, *in.EndTime, time.Duration(ms.Period)*time.Second, ms.Stat)
		if in.ScanBy == nil || *in.ScanBy == "TimestampDescending" {
			for a, b := 0, len(res.Values)-1; a < b; a, b = a+1, b-1 {
				res.Timestamps[a], res.Timestamps[b] = res.Timestamps[b], res.Timestamps[a]
				res.Values[a], res.Values[b] = res.Values[b], res.Values[a]
			}
		}
		if q.ReturnData == nil || *q.ReturnData {
			out = append(out, res)
		}
	}
	return out, nil
}

// checkPeriod applies MetricStat.Period's rules: "For metrics with
// regular resolution, a period can be as short as one minute (60 seconds)
// and must be a multiple of 60", and for older data "Start time between 15
// and 63 days ago - Use a multiple of 300 seconds (5 minutes). Start time
// greater than 63 days ago - Use a multiple of 3600 seconds (1 hour)."
// (Periods of 1, 5, 10, 20 and 30 s exist for high-resolution metrics,
// which NLB metrics are not.)
func checkPeriod(period int64, start, now time.Time) *cwError {
	if period < 60 || period%60 != 0 {
		return validation("The parameter MetricDataQueries.member.1.MetricStat.Period must be a multiple of 60 (got %d).", period)
	}
	age := now.Sub(start)
	if age > 63*24*time.Hour && period%3600 != 0 {
		return validation("for a StartTime more than 63 days ago the period must be a multiple of 3600 (got %d)", period)
	}
	if age > 15*24*time.Hour && period%300 != 0 {
		return validation("for a StartTime more than 15 days ago the period must be a multiple of 300 (got %d)", period)
	}
	return nil
}

// aggregate buckets points in [start, end) by period from start and applies
// stat; buckets without points are left out, as CloudWatch does.
func aggregate(points []datapoint, start, end time.Time, period time.Duration, stat string) ([]time.Time, []float64) {
	buckets := map[int64][]float64{}
	for _, p := range points {
		if p.at.Before(start) || !p.at.Before(end) {
			continue
		}
		i := int64(p.at.Sub(start) / period)
		buckets[i] = append(buckets[i], p.value)
	}
	idx := make([]int64, 0, len(buckets))
	for i := range buckets {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	var ts []time.Time
	var vs []float64
	for _, i := range idx {
		v := buckets[i]
		var r float64
		switch stat {
		case "Sum":
			for _, x := range v {
				r += x
			}
		case "Average":
			for _, x := range v {
				r += x
			}
			r /= float64(len(v))
		case "Minimum":
			r = math.Inf(1)
			for _, x := range v {
				r = math.Min(r, x)
			}
		case "Maximum":
			r = math.Inf(-1)
			for _, x := range v {
				r = math.Max(r, x)
			}
		case "SampleCount":
			r = float64(len(v))
		default: // percentile
			sort.Float64s(v)
			pct, _ := strconv.ParseFloat(stat[1:], 64)
			r = v[min(len(v)-1, int(math.Ceil(pct/100*float64(len(v))))-1+boolInt(pct == 0))]
		}
		ts = append(ts, start.Add(time.Duration(i)*period).UTC())
		vs = append(vs, r)
	}
	return ts, vs
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cwPage cuts the results to MaxDatapoints values; NextToken resumes at the
// next value. A result cut short has StatusCode PartialData ("PartialData
// indicates that there is more data available, which you can retrieve
// using NextToken").
func cwPage(results []cwResult, in *cwGetMetricDataInput) (*cwOutput, *cwError) {
	offset := 0
	if in.NextToken != nil {
		raw, err := base64.RawURLEncoding.DecodeString(*in.NextToken)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(raw), "cw-offset:"))
		if err != nil || perr != nil || !bytes.HasPrefix(raw, []byte("cw-offset:")) || n < 0 {
			return nil, &cwError{http.StatusBadRequest, "InvalidNextToken", "The service couldn't process the NextToken."}
		}
		offset = n
	}
	limit := cwDefaultMaxDatapoints
	if in.MaxDatapoints != nil {
		limit = int(min(*in.MaxDatapoints, cwDefaultMaxDatapoints))
	}
	out := &cwOutput{MetricDataResults: []cwResult{}}
	pos, sent := 0, 0
	for _, res := range results {
		n := len(res.Values)
		from := min(max(offset-pos, 0), n)
		pos += n
		take := min(n-from, limit-sent)
		r := cwResult{ID: res.ID, Label: res.Label, StatusCode: res.StatusCode,
			Timestamps: append([]time.Time{}, res.Timestamps[from:from+take]...), Values: append([]float64{}, res.Values[from:from+take]...)}
		sent += take
		if from+take < n {
			r.StatusCode = "PartialData"
		}
		out.MetricDataResults = append(out.MetricDataResults, r)
	}
	if pos > offset+sent {
		out.NextToken = base64.RawURLEncoding.EncodeToString([]byte("cw-offset:" + strconv.Itoa(offset+sent)))
	}
	return out, nil
}

func writeCWError(w http.ResponseWriter, e *cwError) {
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	body, _ := cborEnc.Marshal(map[string]string{"__type": "com.amazonaws.cloudwatch#" + e.code, "message": e.message})
	w.Header().Set("X-Amzn-Query-Error", e.code+";"+typ)
	w.WriteHeader(e.status)
	w.Write(body)
}
