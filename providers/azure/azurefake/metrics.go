package azurefake

import (
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

// Metrics is an in-process fake of Azure Monitor's metrics endpoint,
// GET {resourceUri}/providers/Microsoft.Insights/metrics, for the load
// balancer metric Portico's usage meter reads (ByteCount, aggregation
// Total, split by FrontendIPAddress), in the shape armmonitor's
// MetricsClient.List expects
// (https://learn.microsoft.com/en-us/rest/api/monitor/metrics/list). Like
// Server it speaks TLS; pass Client() as the transport. Tests store
// samples with Put; Deny answers 403 AuthorizationFailed; faults come from
// the shared core (Faults).
type Metrics struct {
	srv    *httptest.Server
	faults *fault.Injector

	mu      sync.Mutex
	samples []metricSample
	denied  bool
	calls   []MetricsCall
}

// MetricsCall is one request the fake answered.
type MetricsCall struct {
	ResourceID string
	Filter     string
	Code       int
}

type metricSample struct {
	resource, metric string
	dims             map[string]string
	at               time.Time
	value            float64
}

// NewMetrics starts the fake.
func NewMetrics() *Metrics {
	m := &Metrics{faults: fault.New(1)}
	m.srv = httptest.NewTLSServer(http.HandlerFunc(m.serve))
	return m
}

// URL is the ARM endpoint (https://127.0.0.1:port).
func (m *Metrics) URL() string { return m.srv.URL }

// Client trusts the fake's certificate; pass it as the transport.
func (m *Metrics) Client() *http.Client { return m.srv.Client() }

// Close stops the server.
func (m *Metrics) Close() { m.srv.Close() }

// Faults is the shared fault core of this fake.
func (m *Metrics) Faults() *fault.Injector { return m.faults }

// Deny makes every call fail as a caller without
// Microsoft.Insights/metrics/read would, or stops.
func (m *Metrics) Deny(denied bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.denied = denied
}

// Calls returns the requests answered so far.
func (m *Metrics) Calls() []MetricsCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]MetricsCall(nil), m.calls...)
}

// Put stores one sample of a metric of resourceID (dimension names as the
// metric defines them, e.g. FrontendIPAddress).
func (m *Metrics) Put(resourceID, metric string, dims map[string]string, at time.Time, value float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := map[string]string{}
	for k, v := range dims {
		d[strings.ToLower(k)] = v
	}
	m.samples = append(m.samples, metricSample{resource: strings.ToLower(resourceID), metric: metric, dims: d, at: at.UTC(), value: value})
}

type metricsError struct {
	status        int
	code, message string
}

func (m *Metrics) serve(w http.ResponseWriter, r *http.Request) {
	call := MetricsCall{Filter: r.URL.Query().Get("$filter")}
	body, e := m.handle(r, &call)
	call.Code = http.StatusOK
	if e != nil {
		call.Code = e.status
	}
	m.mu.Lock()
	m.calls = append(m.calls, call)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if e != nil {
		w.Header().Set("x-ms-error-code", e.code)
		w.WriteHeader(e.status)
		json.NewEncoder(w).Encode(map[string]any{"code": e.code, "message": e.message})
		return
	}
	w.Write(body)
}

var (
	metricsPath = regexp.MustCompile(`(?i)^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/loadBalancers/[^/]+)/providers/Microsoft\.Insights/metrics$`)
	// Supported time grains of Microsoft.Network/loadBalancers metrics
	// (https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/microsoft-network-loadbalancers-metrics).
	timeGrains = map[string]time.Duration{"PT1M": time.Minute, "PT5M": 5 * time.Minute, "PT15M": 15 * time.Minute, "PT30M": 30 * time.Minute,
		"PT1H": time.Hour, "PT6H": 6 * time.Hour, "PT12H": 12 * time.Hour, "P1D": 24 * time.Hour}
	// Metrics and dimensions of a Standard Load Balancer (same page).
	lbMetrics    = map[string]bool{"ByteCount": true, "PacketCount": true, "SYNCount": true, "VipAvailability": true, "DipAvailability": true, "SnatConnectionCount": true, "AllocatedSnatPorts": true, "UsedSnatPorts": true}
	lbDimensions = map[string]bool{"frontendipaddress": true, "frontendport": true, "direction": true}
	filterTerm   = regexp.MustCompile(`^(\w+) eq '([^']*)'$`)
)

func metricsBadRequest(code, format string, args ...any) *metricsError {
	return &metricsError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

func (m *Metrics) handle(r *http.Request, call *MetricsCall) ([]byte, *metricsError) {
	match := metricsPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodGet || match == nil {
		return nil, &metricsError{http.StatusNotFound, "NotFound", "the fake answers GET <load balancer>/providers/Microsoft.Insights/metrics only"}
	}
	call.ResourceID = match[1]
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return nil, &metricsError{http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."}
	}
	req := fault.Request{Service: "monitor", Op: "metrics.list"}
	switch d := m.faults.Decide(req); d.Kind {
	case fault.None:
	case fault.Throttle:
		return nil, &metricsError{http.StatusTooManyRequests, "TooManyRequests", "The request is throttled."}
	case fault.ServerError:
		return nil, &metricsError{http.StatusInternalServerError, "InternalServerError", "Encountered internal server error."}
	default:
		return nil, &metricsError{http.StatusServiceUnavailable, "ServiceUnavailable", "injected fault " + string(d.Kind)}
	}
	m.faults.Record(req, "")
	m.mu.Lock()
	denied := m.denied
	m.mu.Unlock()
	if denied {
		return nil, &metricsError{http.StatusForbidden, "AuthorizationFailed", "The client does not have authorization to perform action 'Microsoft.Insights/metrics/read' over scope '" + call.ResourceID + "'"}
	}
	q := r.URL.Query()
	if q.Get("api-version") != "2024-02-01" && q.Get("api-version") != "2023-10-01" {
		return nil, metricsBadRequest("InvalidApiVersionParameter", "The api-version '%s' is invalid for this fake (2024-02-01, 2023-10-01).", q.Get("api-version"))
	}
	// timespan: "The timespan of the query. It is a string with the
	// following format 'startDateTime_ISO/endDateTime_ISO'."
	from, to, ok := strings.Cut(q.Get("timespan"), "/")
	start, err1 := time.Parse(time.RFC3339, from)
	end, err2 := time.Parse(time.RFC3339, to)
	if !ok || err1 != nil || err2 != nil {
		return nil, metricsBadRequest("BadRequest", "Invalid timespan %q: want startDateTime_ISO/endDateTime_ISO", q.Get("timespan"))
	}
	if !start.Before(end) {
		return nil, metricsBadRequest("BadRequest", "Start time must be before end time.")
	}
	grain, ok := timeGrains[q.Get("interval")]
	if !ok {
		return nil, metricsBadRequest("BadRequest", "Invalid time grain %q for Microsoft.Network/loadBalancers; supported: PT1M, PT5M, PT15M, PT30M, PT1H, PT6H, PT12H, P1D", q.Get("interval"))
	}
	names := strings.Split(q.Get("metricnames"), ",")
	for _, n := range names {
		if !lbMetrics[n] {
			return nil, metricsBadRequest("BadRequest", "Failed to find metric configuration for provider: Microsoft.Network, resource Type: loadBalancers, metric: %s, Valid metrics: ByteCount,PacketCount,SYNCount,VipAvailability,DipAvailability,SnatConnectionCount,AllocatedSnatPorts,UsedSnatPorts", n)
		}
	}
	if agg := q.Get("aggregation"); agg != "Total" {
		return nil, metricsBadRequest("BadRequest", "the fake computes aggregation Total only, not %q", agg)
	}
	// top: "The maximum number of records to retrieve per resource ID in
	// the request. Valid only if filter is specified. Defaults to 10."
	top := 10
	if t := q.Get("top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 {
			return nil, metricsBadRequest("BadRequest", "Invalid top %q", t)
		}
		top = n
	}
	dim, values, e := parseMetricsFilter(q.Get("$filter"))
	if e != nil {
		return nil, e
	}
	out := map[string]any{"timespan": q.Get("timespan"), "interval": q.Get("interval"), "namespace": "Microsoft.Network/loadBalancers", "resourceregion": "westeurope"}
	var value []any
	for _, name := range names {
		value = append(value, map[string]any{
			"id": call.ResourceID + "/providers/Microsoft.Insights/metrics/" + name, "type": "Microsoft.Insights/metrics",
			"name": map[string]string{"value": name, "localizedValue": name}, "unit": "Count", "errorCode": "Success",
			"timeseries": m.series(strings.ToLower(call.ResourceID), name, dim, values, start, end, grain, top),
		})
	}
	out["value"] = value
	b, err := json.Marshal(out)
	if err != nil {
		return nil, &metricsError{http.StatusInternalServerError, "InternalServerError", err.Error()}
	}
	return b, nil
}

// parseMetricsFilter reads the subset `Dim eq 'a' or Dim eq 'b'` (one
// dimension); '*' splits by every value.
func parseMetricsFilter(f string) (string, map[string]bool, *metricsError) {
	if f == "" {
		return "", nil, nil
	}
	dim, values := "", map[string]bool{}
	for _, term := range strings.Split(f, " or ") {
		mt := filterTerm.FindStringSubmatch(strings.TrimSpace(term))
		if mt == nil {
			return "", nil, metricsBadRequest("BadRequest", "Invalid $filter term %q", term)
		}
		d := strings.ToLower(mt[1])
		if !lbDimensions[d] {
			return "", nil, metricsBadRequest("BadRequest", "Dimension %s is not defined for the metric; valid: FrontendIPAddress, FrontendPort, Direction", mt[1])
		}
		if dim != "" && d != dim {
			return "", nil, metricsBadRequest("BadRequest", "the fake filters on one dimension only")
		}
		dim = d
		values[mt[2]] = true
	}
	return dim, values, nil
}

// series returns, per value of dim (or one series without a filter), one
// data entry per grain in [start, end), with total only where samples
// exist, as Azure Monitor does; at most top series.
func (m *Metrics) series(resource, metric, dim string, values map[string]bool, start, end time.Time, grain time.Duration, top int) []any {
	m.mu.Lock()
	defer m.mu.Unlock()
	sums := map[string]map[int64]float64{}
	for _, s := range m.samples {
		if s.resource != resource || s.metric != metric || s.at.Before(start) || !s.at.Before(end) {
			continue
		}
		key := ""
		if dim != "" {
			key = s.dims[dim]
			if !values["*"] && !values[key] {
				continue
			}
		}
		if sums[key] == nil {
			sums[key] = map[int64]float64{}
		}
		sums[key][int64(s.at.Sub(start)/grain)] += s.value
	}
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > top {
		keys = keys[:top]
	}
	out := []any{}
	for _, k := range keys {
		var data []any
		for i := int64(0); start.Add(time.Duration(i) * grain).Before(end); i++ {
			entry := map[string]any{"timeStamp": start.Add(time.Duration(i) * grain).UTC().Format(time.RFC3339)}
			if v, ok := sums[k][i]; ok {
				entry["total"] = v
			}
			data = append(data, entry)
		}
		ts := map[string]any{"data": data}
		if dim != "" {
			ts["metadatavalues"] = []any{map[string]any{"name": map[string]string{"value": dim, "localizedValue": dim}, "value": k}}
		}
		out = append(out, ts)
	}
	return out
}
