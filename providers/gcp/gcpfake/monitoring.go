package gcpfake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-lb/portico/internal/fault"
)

// Monitoring is an in-process fake of the Cloud Monitoring API v3 for
// projects.timeSeries.list, the one method Portico's usage meter calls,
// in the REST/JSON shape google.golang.org/api/monitoring/v3 speaks
// (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/list).
// Tests store DELTA INT64 samples with Put; a list aligns them per series
// with ALIGN_SUM over the alignment period, reduces across series with
// REDUCE_SUM grouped by the given fields, and pages with pageSize and
// pageToken. Its filter language is the subset Portico writes: a
// conjunction of `key = "value"` and `key = one_of("a", ...)` terms;
// anything else is refused. Faults come from the shared core (Faults);
// Deny answers 403 PERMISSION_DENIED as a caller without
// monitoring.timeSeries.list would get.
type Monitoring struct {
	server *httptest.Server
	faults *fault.Injector

	mu      sync.Mutex
	samples []sample
	denied  bool
	calls   []MonitoringCall
}

// MonitoringCall is one timeSeries.list request the fake answered.
type MonitoringCall struct {
	Project  string
	Filter   string
	HasToken bool
	Code     int // HTTP status
}

type sample struct {
	metric, resource string
	labels           map[string]string
	at               time.Time
	value            int64
}

// NewMonitoring starts the fake.
func NewMonitoring() *Monitoring {
	m := &Monitoring{faults: fault.New(1)}
	m.server = httptest.NewServer(http.HandlerFunc(m.serve))
	return m
}

// URL is the endpoint to give the client (option.WithEndpoint).
func (m *Monitoring) URL() string { return m.server.URL + "/" }

// Close stops the server.
func (m *Monitoring) Close() { m.server.Close() }

// Faults is the shared fault core of this fake.
func (m *Monitoring) Faults() *fault.Injector { return m.faults }

// Deny makes every call fail with 403 PERMISSION_DENIED, or stops.
func (m *Monitoring) Deny(denied bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.denied = denied
}

// Calls returns the requests answered so far.
func (m *Monitoring) Calls() []MonitoringCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]MonitoringCall(nil), m.calls...)
}

// Put stores one sample of a DELTA INT64 metric for a monitored resource.
func (m *Monitoring) Put(metricType, resourceType string, resourceLabels map[string]string, at time.Time, value int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := map[string]string{}
	for k, v := range resourceLabels {
		l[k] = v
	}
	m.samples = append(m.samples, sample{metric: metricType, resource: resourceType, labels: l, at: at.UTC(), value: value})
}

type monError struct {
	code    int
	status  string
	message string
}

func (m *Monitoring) serve(w http.ResponseWriter, r *http.Request) {
	call := MonitoringCall{Filter: r.URL.Query().Get("filter"), HasToken: r.URL.Query().Get("pageToken") != ""}
	body, e := m.handle(r, &call)
	call.Code = http.StatusOK
	if e != nil {
		call.Code = e.code
	}
	m.mu.Lock()
	m.calls = append(m.calls, call)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if e != nil {
		w.WriteHeader(e.code)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": e.code, "message": e.message, "status": e.status}})
		return
	}
	w.Write(body)
}

var timeSeriesPath = regexp.MustCompile(`^/v3/projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/timeSeries$`)

func invalid(format string, args ...any) *monError {
	return &monError{http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf(format, args...)}
}

func (m *Monitoring) handle(r *http.Request, call *MonitoringCall) ([]byte, *monError) {
	match := timeSeriesPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodGet || match == nil {
		return nil, &monError{http.StatusNotFound, "NOT_FOUND", "the fake answers GET /v3/projects/{project}/timeSeries only, not " + r.Method + " " + r.URL.Path}
	}
	call.Project = match[1]
	req := fault.Request{Service: "monitoring", Op: "timeSeries.list"}
	switch d := m.faults.Decide(req); d.Kind {
	case fault.None:
	case fault.Throttle:
		return nil, &monError{http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Time series queries'"}
	case fault.ServerError:
		return nil, &monError{http.StatusInternalServerError, "INTERNAL", "Internal error encountered."}
	case fault.Unavailable:
		return nil, &monError{http.StatusServiceUnavailable, "UNAVAILABLE", "The service is currently unavailable."}
	default:
		return nil, &monError{http.StatusGatewayTimeout, "DEADLINE_EXCEEDED", "injected fault " + string(d.Kind)}
	}
	m.faults.Record(req, "")
	m.mu.Lock()
	denied := m.denied
	m.mu.Unlock()
	if denied {
		return nil, &monError{http.StatusForbidden, "PERMISSION_DENIED", "Permission monitoring.timeSeries.list denied (or the resource may not exist)."}
	}
	q := r.URL.Query()
	// "filter: Required. A monitoring filter that specifies which time
	// series should be returned. The filter must specify a single metric
	// type."
	terms, e := parseMonitoringFilter(q.Get("filter"))
	if e != nil {
		return nil, e
	}
	if len(terms["metric.type"]) != 1 {
		return nil, invalid("Field filter had an invalid value: the filter must specify a single metric type")
	}
	// interval.endTime is required; startTime defaults to it and may not
	// be later
	// (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/TimeInterval).
	end, err := time.Parse(time.RFC3339Nano, q.Get("interval.endTime"))
	if err != nil {
		return nil, invalid("Field interval.endTime had an invalid value of %q", q.Get("interval.endTime"))
	}
	start := end
	if s := q.Get("interval.startTime"); s != "" {
		if start, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, invalid("Field interval.startTime had an invalid value of %q", s)
		}
	}
	if start.After(end) {
		return nil, invalid("The start time must be before the end time (%s) for the non-gauge metric", end.Format(time.RFC3339))
	}
	// Aggregation (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/Aggregation):
	// "The value must be at least 60 seconds"; an aligner other than
	// ALIGN_NONE needs an alignmentPeriod, and a crossSeriesReducer needs
	// an aligner.
	aligner, reducer := q.Get("aggregation.perSeriesAligner"), q.Get("aggregation.crossSeriesReducer")
	var period time.Duration
	if p := q.Get("aggregation.alignmentPeriod"); p != "" {
		secs, err := strconv.ParseInt(strings.TrimSuffix(p, "s"), 10, 64)
		if err != nil || !strings.HasSuffix(p, "s") || secs < 60 {
			return nil, invalid("The alignment period must be at least 60 seconds, got %q", p)
		}
		period = time.Duration(secs) * time.Second
	}
	if aligner != "ALIGN_SUM" || period == 0 {
		return nil, invalid("the fake needs perSeriesAligner ALIGN_SUM with an alignmentPeriod (got %q, %q)", aligner, q.Get("aggregation.alignmentPeriod"))
	}
	if reducer != "" && reducer != "REDUCE_SUM" {
		return nil, invalid("the fake reduces with REDUCE_SUM only, not %q", reducer)
	}
	groupBy := q["aggregation.groupByFields"]
	for _, g := range groupBy {
		if !strings.HasPrefix(g, "resource.label.") && !strings.HasPrefix(g, "resource.labels.") {
			return nil, invalid("the fake groups by resource labels only, not %q", g)
		}
	}
	// pageSize: "If empty or more than 100,000 results, the effective
	// pageSize is 100000 results."
	pageSize := 100000
	if p := q.Get("pageSize"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, invalid("Field pageSize had an invalid value of %q", p)
		}
		if n > 0 && n < pageSize {
			pageSize = n
		}
	}
	offset := 0
	if tok := q.Get("pageToken"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		n, perr := strconv.Atoi(strings.TrimPrefix(string(raw), "ts:"))
		if err != nil || perr != nil || !strings.HasPrefix(string(raw), "ts:") || n < 0 {
			return nil, invalid("Invalid page token: %q", tok)
		}
		offset = n
	}
	series := m.aggregate(terms, start, end, period, reducer != "", groupBy)
	if offset > len(series) {
		return nil, invalid("Invalid page token")
	}
	out := map[string]any{}
	pageEnd := min(offset+pageSize, len(series))
	if len(series[offset:pageEnd]) > 0 {
		out["timeSeries"] = series[offset:pageEnd]
		out["unit"] = "By"
	}
	if pageEnd < len(series) {
		out["nextPageToken"] = base64.RawURLEncoding.EncodeToString([]byte("ts:" + strconv.Itoa(pageEnd)))
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, &monError{http.StatusInternalServerError, "INTERNAL", err.Error()}
	}
	return b, nil
}

// parseMonitoringFilter reads `a = "x" AND b = one_of("y", "z")` into key -> values.
func parseMonitoringFilter(f string) (map[string][]string, *monError) {
	if strings.TrimSpace(f) == "" {
		return nil, invalid("Field filter is required")
	}
	out := map[string][]string{}
	for _, term := range strings.Split(f, " AND ") {
		key, val, ok := strings.Cut(term, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" {
			return nil, invalid("Could not parse filter term %q", term)
		}
		if _, dup := out[key]; dup {
			return nil, invalid("filter names %s twice", key)
		}
		if inner, ok := strings.CutPrefix(val, "one_of("); ok && strings.HasSuffix(inner, ")") {
			for _, v := range strings.Split(strings.TrimSuffix(inner, ")"), ",") {
				s, err := strconv.Unquote(strings.TrimSpace(v))
				if err != nil {
					return nil, invalid("Could not parse filter value %q", v)
				}
				out[key] = append(out[key], s)
			}
			continue
		}
		s, err := strconv.Unquote(val)
		if err != nil {
			return nil, invalid("Could not parse filter value %q", val)
		}
		out[key] = []string{s}
	}
	return out, nil
}

func matches(terms map[string][]string, s sample) bool {
	for key, vals := range terms {
		var got string
		switch {
		case key == "metric.type":
			got = s.metric
		case key == "resource.type":
			got = s.resource
		case strings.HasPrefix(key, "resource.labels."):
			got = s.labels[strings.TrimPrefix(key, "resource.labels.")]
		case strings.HasPrefix(key, "resource.label."):
			got = s.labels[strings.TrimPrefix(key, "resource.label.")]
		default:
			return false
		}
		found := false
		for _, v := range vals {
			found = found || v == got
		}
		if !found {
			return false
		}
	}
	return true
}

type tsPoint struct {
	Interval struct {
		StartTime string `json:"startTime"`
		EndTime   string `json:"endTime"`
	} `json:"interval"`
	Value struct {
		Int64Value string `json:"int64Value"`
	} `json:"value"`
}

type timeSeries struct {
	Metric     map[string]any `json:"metric"`
	Resource   map[string]any `json:"resource"`
	MetricKind string         `json:"metricKind"`
	ValueType  string         `json:"valueType"`
	Points     []tsPoint      `json:"points"`
}

// aggregate sums samples in (start, end] into periods ending at
// start+period, start+2·period, ... and, with reduce, across series
// sharing the group-by labels. Points come newest first, as the API
// returns them.
func (m *Monitoring) aggregate(terms map[string][]string, start, end time.Time, period time.Duration, reduce bool, groupBy []string) []timeSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	type key string
	groups := map[key]map[int64]int64{}
	labelsOf := map[key]map[string]string{}
	resourceOf := map[key]string{}
	for _, s := range m.samples {
		if !matches(terms, s) || !s.at.After(start) || s.at.After(end) {
			continue
		}
		l := map[string]string{}
		if reduce {
			for _, g := range groupBy {
				name := strings.TrimPrefix(strings.TrimPrefix(g, "resource.labels."), "resource.label.")
				l[name] = s.labels[name]
			}
		} else {
			l = s.labels
		}
		names := make([]string, 0, len(l))
		for n := range l {
			names = append(names, n)
		}
		sort.Strings(names)
		k := key(s.resource)
		for _, n := range names {
			k += key("\x00" + n + "=" + l[n])
		}
		if groups[k] == nil {
			groups[k], labelsOf[k], resourceOf[k] = map[int64]int64{}, l, s.resource
		}
		bucket := int64((s.at.Sub(start) - 1) / period)
		groups[k][bucket] += s.value
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var out []timeSeries
	for _, k := range keys {
		ts := timeSeries{Metric: map[string]any{"type": terms["metric.type"][0]}, Resource: map[string]any{"type": resourceOf[key(k)], "labels": labelsOf[key(k)]},
			MetricKind: "DELTA", ValueType: "INT64"}
		var buckets []int64
		for b := range groups[key(k)] {
			buckets = append(buckets, b)
		}
		sort.Slice(buckets, func(i, j int) bool { return buckets[i] > buckets[j] })
		for _, b := range buckets {
			var p tsPoint
			p.Interval.StartTime = start.Add(time.Duration(b) * period).UTC().Format(time.RFC3339)
			p.Interval.EndTime = start.Add(time.Duration(b+1) * period).UTC().Format(time.RFC3339)
			p.Value.Int64Value = strconv.FormatInt(groups[key(k)][b], 10)
			ts.Points = append(ts.Points, p)
		}
		out = append(out, ts)
	}
	return out
}
