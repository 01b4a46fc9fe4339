// Package gcpfake is an in-process fake of the Compute Engine REST API (v1),
// for the subset Portico's GCP provider uses: regional addresses, forwarding
// rules, backend services and health checks, zonal instance groups, global
// firewalls and the three operation collections.
//
// It speaks the wire protocol the real cloud.google.com/go/compute/apiv1 REST
// clients expect (JSON bodies, googleapi error envelopes, long-running
// Operations) and keeps the semantics a controller must cope with:
//
//   - insert, delete, patch, update, setLabels, addInstances and
//     removeInstances return an Operation in RUNNING state; the change becomes
//     visible only when the operation completes, OpDelay after it started
//     (0: at the next request);
//   - 404 notFound, 409 alreadyExists (also while an insert is pending),
//     400 resourceInUseByAnotherResource when deleting something still
//     referenced, 400 instanceInMultipleLoadBalancedIgs;
//   - fingerprints: backend service patch/update and setLabels need the
//     current fingerprint (400 when missing, 412 conditionNotMet when stale);
//   - pagination of listInstances and collection lists (maxResults capped at
//     Options.MaxPageSize, pageToken);
//   - faults from the shared core, internal/fault (Faults): request faults by
//     kind, crashes after n mutating calls, the call log, and operations that
//     take time and may end DONE with an error (quota, resource in use,
//     resource not ready, internal error), which the fake renders in the
//     shapes the Compute API uses; the fake keeps only that wire mapping.
package gcpfake

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-lb/portico/internal/fault"
)

// Options configure the fake.
type Options struct {
	// Project and Region are the only ones the fake serves.
	Project string
	Region  string
	// MaxPageSize caps maxResults on list calls (the real API caps at 500).
	MaxPageSize int
	// OpDelay is how long an operation runs before its change is applied.
	OpDelay time.Duration
	// ExternalPool and InternalPool are where addresses come from.
	ExternalPool netip.Prefix
	InternalPool netip.Prefix
	// Seed seeds probabilistic fault injection.
	Seed int64
	// Quotas limit how many resources of a collection ("forwardingRules",
	// "addresses", ...) a region (or, for global ones, the project) holds;
	// an insert beyond the limit ends with a QUOTA_EXCEEDED operation.
	// Absent: no limit.
	Quotas map[string]int
	// HealthyAfter is how long a backend instance reports UNHEALTHY after
	// its backend service starts probing it, as health checks must pass
	// (healthyThreshold × checkIntervalSec) before the load balancer sends
	// it traffic (https://cloud.google.com/load-balancing/docs/health-check-concepts#health_check_behavior).
	// 0: healthy at once.
	HealthyAfter time.Duration
	// HostProject, when set, is a Shared VPC host project that owns the
	// network: the fake also serves that project's firewall rules, and
	// refuses firewall rules for the network created anywhere else.
	HostProject string
	// RequireAuth answers 401 to requests without a bearer token that the
	// fake's OAuth token endpoint (TokenURL) issued, as the real API does;
	// tests using option.WithoutAuthentication leave it off.
	RequireAuth bool
}

// Fault is an injected error in the Compute API's terms. Inject turns the
// shapes the shared fault vocabulary has a kind for (403 rateLimitExceeded and
// 429: fault.Throttle; 500: fault.ServerError; 502-504: fault.Unavailable)
// into fault.Rules; other answers (403 quotaExceeded, 403 forbidden, ...) are
// wire-specific refusals the fake gives as they are.
type Fault struct {
	// Code is the HTTP status (403, 429, 500, 503).
	Code int
	// Reason is the googleapi error reason ("rateLimitExceeded",
	// "quotaExceeded", "backendError").
	Reason string
	// Times is how many calls fail; negative means until ClearFaults.
	Times int
	// Rate, when in (0,1), fails each matching call with that probability
	// instead of every call.
	Rate float64
	// MutatingOnly limits the fault to mutating calls.
	MutatingOnly bool
}

// Throttle is the fault the real API returns when a project exceeds its
// rate limit.
func Throttle(times int) Fault {
	return Fault{Code: http.StatusForbidden, Reason: "rateLimitExceeded", Times: times}
}

// Call is one recorded request.
type Call struct {
	Method   string
	Path     string
	Mutating bool
	Code     int
	// UserAgent is the caller-supplied user agent, which Cloud Audit Logs
	// record as requestMetadata.callerSuppliedUserAgent
	// (https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog#requestmetadata);
	// tests set it per client to tell callers apart.
	UserAgent string
}

// Object is one stored resource, as the JSON the API returns.
type Object map[string]any

type entry struct {
	obj           Object
	pendingCreate bool
	pendingDelete bool
}

type operation struct {
	obj        Object
	due        time.Time
	apply      func() *apiError
	fail       *opError // set when the fault core fails the operation
	coll, name string   // the target
	done       bool
}

type apiError struct {
	code    int
	reason  string
	message string
}

// opError is an operation failure: an apiError and its errorDetails entry.
type opError struct {
	*apiError
	details map[string]any
}

// Server is the fake. Create it with New and Close it when done.
type Server struct {
	opts Options
	srv  *httptest.Server

	mu        sync.Mutex
	colls     map[string]map[string]*entry // "regions/r/addresses" -> name -> entry
	members   map[string]map[string]bool   // IG rel link -> instance rel links
	instances map[string]bool              // instance rel links
	ops       map[string]*operation        // op name -> op
	pending   []*operation
	nextID    uint64
	inj       *fault.Injector
	refusals  []Fault // wire-specific answers without a fault.Kind
	throttles int     // throttles answered, to alternate 403 and 429
	calls     []Call
	tokens    map[string]bool
	health    map[string]string    // instance rel link -> health state
	probed    map[string]time.Time // backend service name|instance rel link -> probing since
}

// New starts a fake Compute API on a local httptest server.
func New(opts Options) *Server {
	if opts.Project == "" {
		opts.Project = "portico-test"
	}
	if opts.Region == "" {
		opts.Region = "us-central1"
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = 500
	}
	if !opts.ExternalPool.IsValid() {
		opts.ExternalPool = netip.MustParsePrefix("203.0.113.0/24")
	}
	if !opts.InternalPool.IsValid() {
		opts.InternalPool = netip.MustParsePrefix("10.128.0.0/20")
	}
	s := &Server{
		opts:      opts,
		colls:     map[string]map[string]*entry{},
		members:   map[string]map[string]bool{},
		instances: map[string]bool{},
		ops:       map[string]*operation{},
		nextID:    1000,
		inj:       fault.New(uint64(opts.Seed)),
		tokens:    map[string]bool{},
		health:    map[string]string{},
		probed:    map[string]time.Time{},
	}
	s.inj.SetOperationDelay(opts.OpDelay)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the endpoint to pass to option.WithEndpoint.
func (s *Server) URL() string { return s.srv.URL }

// TokenURL is an OAuth 2.0 token endpoint that grants access tokens for any
// JWT-bearer or refresh-token request; put it in a credentials file's
// token_uri so Application Default Credentials work against the fake.
func (s *Server) TokenURL() string { return s.srv.URL + "/token" }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Project returns the served project.
func (s *Server) Project() string { return s.opts.Project }

// Region returns the served region.
func (s *Server) Region() string { return s.opts.Region }

// AddInstance makes a VM exist in zone, so instance groups may hold it.
func (s *Server) AddInstance(zone, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[s.rel("zones/"+zone+"/instances/"+name)] = true
}

// SetHealth sets what backend-service health reports for an instance
// ("HEALTHY", "UNHEALTHY", ...); instances default to HEALTHY.
func (s *Server) SetHealth(zone, name, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health[s.rel("zones/"+zone+"/instances/"+name)] = state
}

// Faults is the fake's fault and operations core: request rules by kind,
// CrashAfter, operation delay and failures, the call log and Stats.
func (s *Server) Faults() *fault.Injector { return s.inj }

// Inject adds a fault (see Fault).
func (s *Server) Inject(f Fault) {
	kind := fault.None
	switch {
	case f.Code == http.StatusTooManyRequests, f.Code == http.StatusForbidden && (f.Reason == "rateLimitExceeded" || f.Reason == "userRateLimitExceeded"):
		kind = fault.Throttle
	case f.Code == http.StatusInternalServerError:
		kind = fault.ServerError
	case f.Code >= 502 && f.Code <= 504:
		kind = fault.Unavailable
	}
	if kind == fault.None {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.refusals = append(s.refusals, f)
		return
	}
	s.inj.Add(fault.Rule{Kind: kind, Times: f.Times, Rate: f.Rate, MutatingOnly: f.MutatingOnly})
}

// CrashAfter lets n more mutating calls through and fails every later call
// with 503 until ClearFaults, as if the caller died mid-way. Operations
// already started still complete.
func (s *Server) CrashAfter(n int) { s.inj.CrashAfter(n) }

// ClearFaults removes injected request faults and crashes; operation rules
// stay (Faults().ClearOperations removes them).
func (s *Server) ClearFaults() {
	s.inj.Recover()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refusals = nil
}

// SetOpDelay changes how long operations started from now on run.
func (s *Server) SetOpDelay(d time.Duration) { s.inj.SetOperationDelay(d) }

// Settle completes every pending operation now.
func (s *Server) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range s.pending {
		op.due = time.Time{}
	}
	s.advance()
}

// Calls returns a copy of the recorded requests.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// MutatingCalls counts mutating requests received, failed ones included.
func (s *Server) MutatingCalls() int { return s.inj.MutatingCalls() }

// Resource is one stored object, for listings in tests.
type Resource struct {
	// Kind is the collection ("addresses", "forwardingRules", ...).
	Kind string
	// ID is the resource's path below the project ("regions/r/addresses/x").
	ID          string
	Description string
	Labels      map[string]string
	Object      Object
}

// Resources lists every visible object, sorted by ID.
func (s *Server) Resources() []Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Resource
	for coll, m := range s.colls {
		kind := coll[strings.LastIndex(coll, "/")+1:]
		for name, e := range m {
			if e.pendingCreate {
				continue
			}
			r := Resource{Kind: kind, ID: coll + "/" + name, Object: clone(e.obj)}
			r.Description, _ = e.obj["description"].(string)
			if l, ok := e.obj["labels"].(map[string]any); ok {
				r.Labels = map[string]string{}
				for k, v := range l {
					r.Labels[k], _ = v.(string)
				}
			}
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Members returns the instance names in a zonal instance group.
func (s *Server) Members(zone, group string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for l := range s.members[s.rel("zones/"+zone+"/instanceGroups/"+group)] {
		out = append(out, l[strings.LastIndex(l, "/")+1:])
	}
	sort.Strings(out)
	return out
}

// PutMembers makes instances (names in zone) members of a zonal instance
// group, bypassing operations, as another tool would have.
func (s *Server) PutMembers(zone, group string, instances ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.rel("zones/" + zone + "/instanceGroups/" + group)
	if s.members[g] == nil {
		s.members[g] = map[string]bool{}
	}
	for _, i := range instances {
		s.members[g][s.rel("zones/"+zone+"/instances/"+i)] = true
	}
}

// Put stores an object directly, bypassing operations, as a user or another
// tool would have created it. coll is e.g. "regions/us-central1/addresses".
func (s *Server) Put(coll string, obj Object) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, _ := obj["name"].(string)
	obj = clone(obj)
	s.stamp(coll, name, obj)
	if coll == s.regional("addresses") {
		if _, ok := obj["address"]; !ok {
			obj["address"] = s.allocate(obj["addressType"] == "INTERNAL").String()
		}
	}
	s.coll(coll)[name] = &entry{obj: obj}
}

// rel makes a path below the served project absolute; a path already naming
// a project (the host project's collections) stays as it is.
func (s *Server) rel(path string) string {
	if strings.HasPrefix(path, "projects/") {
		return path
	}
	return "projects/" + s.opts.Project + "/" + path
}

func (s *Server) regional(kind string) string { return "regions/" + s.opts.Region + "/" + kind }

func (s *Server) selfLink(path string) string {
	return s.srv.URL + "/compute/v1/" + s.rel(path)
}

func (s *Server) coll(path string) map[string]*entry {
	m := s.colls[path]
	if m == nil {
		m = map[string]*entry{}
		s.colls[path] = m
	}
	return m
}

func (s *Server) stamp(coll, name string, obj Object) {
	s.nextID++
	obj["id"] = strconv.FormatUint(s.nextID, 10)
	obj["selfLink"] = s.selfLink(coll + "/" + name)
	obj["creationTimestamp"] = time.Now().UTC().Format(time.RFC3339)
	obj["kind"] = "compute#" + strings.TrimSuffix(coll[strings.LastIndex(coll, "/")+1:], "s")
}

func (s *Server) fingerprint() string {
	s.nextID++
	return strconv.FormatUint(s.nextID*2654435761, 36)
}

// serve routes one request.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()

	if r.URL.Path == "/token" {
		s.grantToken(w, r)
		return
	}
	if s.opts.RequireAuth && !s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
		s.reply(w, r, fault.Request{Service: "compute", Op: r.Method}, nil, &apiError{401, "required", "Request is missing required authentication credential."})
		return
	}
	project, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/compute/v1/projects/"), "/")
	if !strings.HasPrefix(r.URL.Path, "/compute/v1/projects/") || project != s.opts.Project && (s.opts.HostProject == "" || project != s.opts.HostProject) {
		s.reply(w, r, fault.Request{Service: "compute", Op: r.Method}, nil, &apiError{404, "notFound", "unknown project or path " + r.URL.Path})
		return
	}
	parts := strings.Split(rest, "/")
	if len(parts) == 2 && parts[0] == "aggregated" && r.Method == http.MethodGet && project == s.opts.Project {
		req := fault.Request{Service: "compute", Op: "GET aggregated/" + parts[1]}
		if err := s.fault(req); err != nil {
			s.reply(w, r, req, nil, err)
			return
		}
		out, aerr := s.aggregatedList(parts[1], r)
		s.reply(w, r, req, out, aerr)
		return
	}
	// scope: regions/<r> | zones/<z> | global
	var scope string
	switch {
	case len(parts) >= 3 && (parts[0] == "regions" || parts[0] == "zones"):
		scope, parts = parts[0]+"/"+parts[1], parts[2:]
	case len(parts) >= 2 && parts[0] == "global":
		scope, parts = "global", parts[1:]
	default:
		s.reply(w, r, fault.Request{Service: "compute", Op: r.Method}, nil, &apiError{404, "notFound", "unknown path " + r.URL.Path})
		return
	}
	if strings.HasPrefix(scope, "regions/") && scope != "regions/"+s.opts.Region {
		s.reply(w, r, fault.Request{Service: "compute", Op: r.Method}, nil, &apiError{400, "invalid", "region not served by the fake: " + scope})
		return
	}
	if project != s.opts.Project {
		// The Shared VPC host project: the fake serves its firewall rules
		// (and their operations) only.
		if scope != "global" || parts[0] != "firewalls" && parts[0] != "operations" {
			s.reply(w, r, fault.Request{Service: "compute", Op: r.Method}, nil, &apiError{404, "notFound", "the fake serves only firewalls of host project " + project})
			return
		}
		scope = "projects/" + project + "/global"
	}
	kind := parts[0]
	coll := scope + "/" + kind
	var name, verb string
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		verb = parts[2]
	}
	mutating := r.Method != http.MethodGet && kind != "operations" && verb != "listInstances" && verb != "getHealth"
	op := r.Method + " " + kind
	if verb != "" {
		op += "/" + verb
	}
	req := fault.Request{Service: "compute", Op: op, Mutating: mutating, Caller: r.UserAgent()}
	if err := s.fault(req); err != nil {
		s.reply(w, r, req, nil, err)
		return
	}
	var body Object
	if r.Body != nil {
		raw, _ := io.ReadAll(r.Body)
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				s.reply(w, r, req, nil, &apiError{400, "parseError", "malformed JSON body: " + err.Error()})
				return
			}
		}
	}

	var out Object
	var aerr *apiError
	switch {
	case kind == "operations":
		out, aerr = s.getOperation(scope, name)
	case r.Method == http.MethodGet && name == "":
		out, aerr = s.list(coll, r)
	case r.Method == http.MethodGet:
		out, aerr = s.get(coll, name)
	case r.Method == http.MethodPost && name == "":
		out, aerr = s.insert(scope, coll, kind, body)
	case r.Method == http.MethodDelete:
		out, aerr = s.delete(scope, coll, kind, name)
	case r.Method == http.MethodPatch || r.Method == http.MethodPut:
		out, aerr = s.update(scope, coll, kind, name, body, r.Method == http.MethodPatch)
	case r.Method == http.MethodPost && verb == "setLabels":
		out, aerr = s.setLabels(scope, coll, name, body)
	case r.Method == http.MethodPost && kind == "backendServices" && verb == "getHealth":
		out, aerr = s.getHealth(coll, name, body)
	case r.Method == http.MethodPost && kind == "instanceGroups" && verb == "listInstances":
		out, aerr = s.listInstances(coll, name, r)
	case r.Method == http.MethodPost && kind == "instanceGroups" && (verb == "addInstances" || verb == "removeInstances"):
		out, aerr = s.changeMembers(scope, coll, name, body, verb == "addInstances")
	default:
		aerr = &apiError{400, "invalid", fmt.Sprintf("unsupported call %s %s", r.Method, r.URL.Path)}
	}
	s.reply(w, r, req, out, aerr)
}

func (s *Server) grantToken(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	switch r.PostForm.Get("grant_type") {
	case "urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token":
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "unsupported_grant_type"})
		return
	}
	s.nextID++
	tok := fmt.Sprintf("gcpfake-token-%d", s.nextID)
	s.tokens[tok] = true
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

// fault asks the fault core what happens to req and renders the answer as
// the Compute API does: throttling as 403 rateLimitExceeded or 429 (both
// occur, https://cloud.google.com/compute/api-quota#rate_limit_errors; the
// fake alternates them), server errors as 500/503 backendError
// (https://cloud.google.com/compute/docs/api/how-tos/api-errors). s.mu is
// held; a Slow answer releases it while it waits.
func (s *Server) fault(req fault.Request) *apiError {
	d := s.inj.Decide(req)
	switch d.Kind {
	case fault.None:
	case fault.Throttle:
		s.throttles++
		if s.throttles%2 == 0 {
			return &apiError{http.StatusTooManyRequests, "rateLimitExceeded", "injected fault: Too Many Requests"}
		}
		return &apiError{http.StatusForbidden, "rateLimitExceeded", "injected fault: Rate Limit Exceeded"}
	case fault.ServerError:
		return &apiError{http.StatusInternalServerError, "backendError", "injected fault: Internal Error"}
	case fault.Unavailable:
		return &apiError{http.StatusServiceUnavailable, "backendError", "injected fault: Service Unavailable"}
	case fault.Crash:
		return &apiError{http.StatusServiceUnavailable, "backendError", "injected crash: the caller is gone"}
	case fault.Slow:
		s.mu.Unlock()
		time.Sleep(d.Delay)
		s.mu.Lock()
		return &apiError{http.StatusGatewayTimeout, "backendError", "injected fault: Deadline Exceeded"}
	default:
		return &apiError{http.StatusServiceUnavailable, "backendError", "injected fault: " + string(d.Kind)}
	}
	for i := range s.refusals {
		f := &s.refusals[i]
		if f.Times == 0 || (f.MutatingOnly && !req.Mutating) {
			continue
		}
		if f.Times > 0 {
			f.Times--
		}
		return &apiError{f.Code, f.Reason, fmt.Sprintf("injected fault: %s", f.Reason)}
	}
	return nil
}

func (s *Server) reply(w http.ResponseWriter, r *http.Request, req fault.Request, out Object, aerr *apiError) {
	code, outcome := http.StatusOK, ""
	if aerr != nil {
		code, outcome = aerr.code, strconv.Itoa(aerr.code)+" "+aerr.reason
	}
	s.inj.Record(req, outcome)
	s.calls = append(s.calls, Call{Method: r.Method, Path: r.URL.Path, Mutating: req.Mutating, Code: code, UserAgent: r.UserAgent()})
	w.Header().Set("Content-Type", "application/json")
	if aerr != nil {
		w.WriteHeader(aerr.code)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"code":    aerr.code,
			"message": aerr.message,
			"errors":  []any{map[string]any{"domain": "global", "reason": aerr.reason, "message": aerr.message}},
		}})
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

// advance completes operations that are due; s.mu is held. An operation the
// fault core failed ends DONE with error.errors[] and httpErrorStatusCode, as
// a real Operation does
// (https://cloud.google.com/compute/docs/reference/rest/v1/regionOperations#Operation);
// its change is not applied (an insert leaves nothing, a delete leaves the
// resource as it was).
func (s *Server) advance() {
	now := time.Now()
	rest := s.pending[:0]
	for _, op := range s.pending {
		if op.due.After(now) {
			rest = append(rest, op)
			continue
		}
		op.done = true
		op.obj["status"] = "DONE"
		op.obj["progress"] = 100
		op.obj["endTime"] = now.UTC().Format(time.RFC3339)
		var err *apiError
		var details map[string]any
		if op.fail == nil {
			err = op.apply()
		} else {
			s.undo(op)
			err, details = op.fail.apiError, op.fail.details
		}
		if err != nil {
			op.obj["httpErrorStatusCode"] = err.code
			op.obj["httpErrorMessage"] = strings.ToUpper(http.StatusText(err.code))
			e := map[string]any{"code": err.reason, "message": err.message}
			if details != nil {
				e["errorDetails"] = []any{details}
			}
			op.obj["error"] = map[string]any{"errors": []any{e}}
		}
	}
	s.pending = rest
}

// undo takes back what starting a failed operation reserved.
func (s *Server) undo(op *operation) {
	e, ok := s.coll(op.coll)[op.name]
	if !ok {
		return
	}
	switch op.obj["operationType"] {
	case "insert":
		if e.pendingCreate {
			delete(s.coll(op.coll), op.name)
		}
	case "delete":
		e.pendingDelete = false
	}
}

// quotaMetrics names the Compute Engine quota each collection counts against
// (https://cloud.google.com/compute/resource-usage#quotas).
var quotaMetrics = map[string]string{
	"addresses":       "STATIC_ADDRESSES",
	"forwardingRules": "FORWARDING_RULES",
	"backendServices": "REGION_BACKEND_SERVICES",
	"healthChecks":    "HEALTH_CHECKS",
	"firewalls":       "FIREWALLS",
	"instanceGroups":  "INSTANCE_GROUPS",
}

// operationError renders an operation failure of the fault core the way
// Compute Engine reports it in Operation.error.errors[]: a code such as
// QUOTA_EXCEEDED (with errorDetails[].quotaInfo), RESOURCE_IN_USE_BY_ANOTHER_RESOURCE,
// RESOURCE_NOT_READY or INTERNAL_ERROR
// (https://cloud.google.com/compute/docs/reference/rest/v1/regionOperations#Operation,
// https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-resource-availability#quota).
func (s *Server) operationError(kind fault.Kind, scope, coll, target string) *opError {
	switch kind {
	case fault.OpQuota:
		limit := 8
		if l, ok := s.opts.Quotas[coll[strings.LastIndex(coll, "/")+1:]]; ok {
			limit = l
		}
		coll = coll[strings.LastIndex(coll, "/")+1:]
		metric := quotaMetrics[coll]
		if metric == "" {
			metric = strings.ToUpper(coll)
		}
		where := "region " + s.opts.Region
		dims := map[string]any{"region": s.opts.Region}
		if scope == "global" {
			where, dims = "project "+s.opts.Project, map[string]any{}
		}
		return &opError{&apiError{http.StatusForbidden, "QUOTA_EXCEEDED",
			fmt.Sprintf("Quota '%s' exceeded.  Limit: %d.0 in %s.", metric, limit, where)},
			map[string]any{"quotaInfo": map[string]any{
				"metricName": "compute.googleapis.com/" + strings.ToLower(metric),
				"limitName":  metric + "-per-project",
				"dimensions": dims,
				"limit":      limit,
			}}}
	case fault.OpConflict:
		return &opError{apiError: &apiError{http.StatusBadRequest, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
			fmt.Sprintf("The resource '%s' is already being used by another resource.", target)}}
	case fault.OpSuperseded:
		return &opError{apiError: &apiError{http.StatusBadRequest, "RESOURCE_NOT_READY",
			fmt.Sprintf("The resource '%s' is not ready", target)}}
	default:
		return &opError{apiError: &apiError{http.StatusInternalServerError, "INTERNAL_ERROR",
			"Internal error. Please try again or contact Google Support."}}
	}
}

// overQuota reports whether an insert into coll (already counted, pending)
// exceeds Options.Quotas: Compute Engine fails such an insert's operation
// with QUOTA_EXCEEDED (https://cloud.google.com/compute/resource-usage).
func (s *Server) overQuota(coll string) bool {
	limit, ok := s.opts.Quotas[coll[strings.LastIndex(coll, "/")+1:]]
	return ok && len(s.coll(coll)) > limit
}

// startOp records a running operation whose apply runs when it completes;
// the fault core decides when that is and whether it fails instead.
func (s *Server) startOp(scope, opType, target string, apply func() *apiError) Object {
	s.nextID++
	name := fmt.Sprintf("operation-%d", s.nextID)
	obj := Object{
		"kind":          "compute#operation",
		"id":            strconv.FormatUint(s.nextID, 10),
		"name":          name,
		"operationType": opType,
		"status":        "RUNNING",
		"progress":      0,
		"targetLink":    s.selfLink(target),
		"selfLink":      s.selfLink(scope + "/operations/" + name),
		"startTime":     time.Now().UTC().Format(time.RFC3339),
	}
	switch {
	case strings.HasPrefix(scope, "regions/"):
		obj["region"] = s.selfLink(scope)
	case strings.HasPrefix(scope, "zones/"):
		obj["zone"] = s.selfLink(scope)
	}
	coll, rname := target[:strings.LastIndex(target, "/")], target[strings.LastIndex(target, "/")+1:]
	fate := s.inj.StartOperation(fault.Request{Service: "compute", Op: opType + " " + coll[strings.LastIndex(coll, "/")+1:], Mutating: true})
	op := &operation{obj: obj, due: fate.Due, apply: apply, coll: coll, name: rname}
	if opType == "insert" && fate.Fail == fault.None && s.overQuota(coll) {
		fate.Fail = fault.OpQuota
	}
	if fate.Fail != fault.None {
		op.fail = s.operationError(fate.Fail, scope, coll, s.rel(target))
	}
	s.ops[name] = op
	s.pending = append(s.pending, op)
	return clone(obj)
}

func (s *Server) getOperation(scope, name string) (Object, *apiError) {
	op, ok := s.ops[name]
	if !ok || !strings.HasSuffix(op.obj["selfLink"].(string), scope+"/operations/"+name) {
		return nil, &apiError{404, "notFound", "operation " + name + " not found"}
	}
	return clone(op.obj), nil
}

func (s *Server) get(coll, name string) (Object, *apiError) {
	e, ok := s.coll(coll)[name]
	if !ok || e.pendingCreate {
		return nil, notFound(coll, name)
	}
	out := clone(e.obj)
	if strings.HasSuffix(coll, "/addresses") {
		s.fillAddressUsers(out)
	}
	if strings.HasSuffix(coll, "/instanceGroups") {
		out["size"] = len(s.members[s.rel(coll+"/"+name)])
	}
	return out, nil
}

func notFound(coll, name string) *apiError {
	return &apiError{404, "notFound", fmt.Sprintf("The resource '%s/%s' was not found", coll, name)}
}

func (s *Server) list(coll string, r *http.Request) (Object, *apiError) {
	match, aerr := parseFilter(r.URL.Query().Get("filter"))
	if aerr != nil {
		return nil, aerr
	}
	var names []string
	for n, e := range s.coll(coll) {
		if !e.pendingCreate && match(e.obj) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	page, next := s.page(names, r)
	items := []any{}
	for _, n := range page {
		items = append(items, clone(s.coll(coll)[n].obj))
	}
	out := Object{"items": items}
	if next != "" {
		out["nextPageToken"] = next
	}
	return out, nil
}

// aggregatedList lists kind in every zone and region, keyed by scope
// (https://cloud.google.com/compute/docs/reference/rest/v1/instanceGroups/aggregatedList);
// pagination is not modelled (the fake holds few).
func (s *Server) aggregatedList(kind string, r *http.Request) (Object, *apiError) {
	match, aerr := parseFilter(r.URL.Query().Get("filter"))
	if aerr != nil {
		return nil, aerr
	}
	items := Object{}
	for coll, m := range s.colls {
		scope, k, ok := strings.Cut(coll, "/"+kind)
		if !ok || k != "" || strings.HasPrefix(coll, "projects/") {
			continue
		}
		var objs []any
		for _, n := range slices.Sorted(maps.Keys(m)) {
			if e := m[n]; !e.pendingCreate && match(e.obj) {
				objs = append(objs, clone(e.obj))
			}
		}
		if len(objs) > 0 {
			items[scope] = map[string]any{kind: objs}
		}
	}
	return Object{"kind": "compute#aggregatedList", "items": items}, nil
}

// page cuts sorted keys by maxResults (capped) and pageToken (the last key
// of the previous page).
func (s *Server) page(keys []string, r *http.Request) ([]string, string) {
	size := s.opts.MaxPageSize
	if v, err := strconv.Atoi(r.URL.Query().Get("maxResults")); err == nil && v > 0 && v < size {
		size = v
	}
	start := 0
	if tok := r.URL.Query().Get("pageToken"); tok != "" {
		start = sort.SearchStrings(keys, tok)
		if start < len(keys) && keys[start] == tok {
			start++
		}
	}
	end := min(start+size, len(keys))
	if start >= end {
		return nil, ""
	}
	next := ""
	if end < len(keys) {
		next = keys[end-1]
	}
	return keys[start:end], next
}

var (
	// Resource names: RFC 1035, 1-63 characters
	// (https://cloud.google.com/compute/docs/naming-resources#resource-name-format).
	nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// Label keys start with a lowercase letter; keys and values hold
	// lowercase letters, digits, '_' and '-' (international lowercase
	// letters too), at most 63 characters; values may be empty
	// (https://cloud.google.com/compute/docs/labeling-resources#requirements).
	labelKeyRE   = regexp.MustCompile(`^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$`)
)

const (
	// maxLabels per resource
	// (https://cloud.google.com/compute/docs/labeling-resources#requirements).
	maxLabels = 64
	// maxDescription is the length the API accepts in a resource's
	// description. The REST reference does not state it
	// (https://cloud.google.com/compute/docs/reference/rest/v1/forwardingRules);
	// 2048 is the limit issue 15's review of the API recorded.
	maxDescription = 2048
)

func validateLabels(v any) *apiError {
	m, _ := v.(map[string]any)
	if len(m) > maxLabels {
		return &apiError{400, "invalid", fmt.Sprintf("Invalid value for field 'labels': %d labels, at most %d are allowed", len(m), maxLabels)}
	}
	for k, val := range m {
		sv, _ := val.(string)
		if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(sv) {
			return &apiError{400, "invalid", fmt.Sprintf("Invalid value for field 'labels': %q=%q", k, sv)}
		}
	}
	return nil
}

// labelsAtInsert says whether an insert of kind keeps the labels it is
// given. Addresses and forwarding rules ignore them: "Labels for this
// resource. These can only be added or modified by the setLabels method"
// (https://cloud.google.com/compute/docs/reference/rest/v1/addresses,
// https://cloud.google.com/compute/docs/reference/rest/v1/forwardingRules).
func labelsAtInsert(kind string) bool { return kind != "addresses" && kind != "forwardingRules" }

func (s *Server) insert(scope, coll, kind string, body Object) (Object, *apiError) {
	name, _ := body["name"].(string)
	if name == "" {
		return nil, &apiError{400, "required", "Required field 'name' not specified"}
	}
	if !nameRE.MatchString(name) {
		return nil, &apiError{400, "invalid", fmt.Sprintf("Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", name)}
	}
	if err := validateLabels(body["labels"]); err != nil {
		return nil, err
	}
	if d, _ := body["description"].(string); len(d) > maxDescription {
		return nil, &apiError{400, "invalid", fmt.Sprintf("Invalid value for field 'resource.description': longer than %d characters", maxDescription)}
	}
	if _, exists := s.coll(coll)[name]; exists {
		return nil, &apiError{409, "alreadyExists", fmt.Sprintf("The resource '%s/%s' already exists", s.rel(coll), name)}
	}
	obj := clone(body)
	if !labelsAtInsert(kind) {
		delete(obj, "labels")
	}
	s.stamp(coll, name, obj)
	var err *apiError
	switch kind {
	case "addresses":
		err = s.validateAddress(obj)
	case "forwardingRules":
		err = s.validateForwardingRule(obj)
	case "backendServices":
		err = s.validateBackendService(obj, name)
		obj["fingerprint"] = s.fingerprint()
	case "healthChecks", "instanceGroups":
	case "firewalls":
		err = s.validateFirewallProject(coll, obj)
		if err == nil {
			err = validateFirewall(obj)
		}
	default:
		err = &apiError{400, "invalid", "the fake does not serve " + kind}
	}
	if err != nil {
		return nil, err
	}
	if _, ok := obj["labels"]; ok || kind == "addresses" || kind == "forwardingRules" {
		obj["labelFingerprint"] = s.fingerprint()
	}
	e := &entry{obj: obj, pendingCreate: true}
	s.coll(coll)[name] = e
	return s.startOp(scope, "insert", coll+"/"+name, func() *apiError {
		e.pendingCreate = false
		if kind == "backendServices" {
			s.startProbing(name)
		}
		return nil
	}), nil
}

func (s *Server) validateAddress(obj Object) *apiError {
	internal := obj["addressType"] == "INTERNAL"
	// SHARED_LOADBALANCER_VIP is a purpose of internal addresses only
	// (https://cloud.google.com/compute/docs/reference/rest/v1/addresses#Address.FIELDS.purpose).
	if obj["purpose"] == "SHARED_LOADBALANCER_VIP" && !internal {
		return &apiError{400, "invalid", "Invalid value for field 'resource.purpose': 'SHARED_LOADBALANCER_VIP'. The purpose applies to internal addresses only"}
	}
	if ip, ok := obj["address"].(string); ok && ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return &apiError{400, "invalid", "invalid address " + ip}
		}
		// Promotion of an ephemeral address in use by a forwarding rule is
		// allowed; taking another reserved address is not.
		for _, e := range s.coll(s.regional("addresses")) {
			if e.obj["address"] == a.String() {
				return &apiError{400, "invalid", "IP address " + ip + " is already reserved"}
			}
		}
		inUse := false
		for _, e := range s.coll(s.regional("forwardingRules")) {
			if e.obj["IPAddress"] == a.String() {
				inUse = true
			}
		}
		// An external address is reserved with a given IP only to promote
		// the ephemeral IP a resource already uses
		// (https://cloud.google.com/vpc/docs/reserve-static-external-ip-address#promote_ephemeral_ip);
		// Google picks every other external IP. An internal one may name
		// any free IP of its subnet
		// (https://cloud.google.com/vpc/docs/reserve-static-internal-ip-address).
		if !internal && !inUse {
			return &apiError{400, "invalid", "Invalid value for field 'resource.address': '" + ip + "'. Specified IP address is not available: an external address can be reserved by IP only by promoting an ephemeral address in use"}
		}
		if internal && !inUse && !s.opts.InternalPool.Contains(a) {
			return &apiError{400, "invalid", "IP address " + ip + " is not in the subnetwork's range"}
		}
	} else {
		obj["address"] = s.allocate(internal).String()
	}
	if internal {
		delete(obj, "networkTier")
	} else if _, ok := obj["networkTier"]; !ok {
		obj["networkTier"] = "PREMIUM"
	}
	if _, ok := obj["addressType"]; !ok {
		obj["addressType"] = "EXTERNAL"
	}
	obj["status"] = "RESERVED"
	obj["region"] = s.selfLink("regions/" + s.opts.Region)
	return nil
}

func (s *Server) fillAddressUsers(obj Object) {
	var users []any
	for _, e := range s.coll(s.regional("forwardingRules")) {
		if !e.pendingCreate && e.obj["IPAddress"] == obj["address"] {
			users = append(users, e.obj["selfLink"])
		}
	}
	if len(users) > 0 {
		obj["users"] = users
		obj["status"] = "IN_USE"
	}
}

// allocate returns the lowest address in the pool that no address or rule
// holds.
func (s *Server) allocate(internal bool) netip.Addr {
	pool := s.opts.ExternalPool
	if internal {
		pool = s.opts.InternalPool
	}
	used := map[string]bool{}
	for _, c := range []string{s.regional("addresses"), s.regional("forwardingRules")} {
		for _, e := range s.coll(c) {
			for _, f := range []string{"address", "IPAddress"} {
				if v, ok := e.obj[f].(string); ok {
					used[v] = true
				}
			}
		}
	}
	for a := pool.Masked().Addr().Next().Next(); pool.Contains(a); a = a.Next() {
		if !used[a.String()] {
			return a
		}
	}
	return netip.Addr{}
}

func (s *Server) validateForwardingRule(obj Object) *apiError {
	internal := obj["loadBalancingScheme"] == "INTERNAL"
	proto, _ := obj["IPProtocol"].(string)
	if proto == "" {
		proto = "TCP"
		obj["IPProtocol"] = proto
	}
	ports, _ := obj["ports"].([]any)
	portRange, _ := obj["portRange"].(string)
	allPorts, _ := obj["allPorts"].(bool)
	switch {
	case len(ports) > 5:
		return &apiError{400, "invalid", "Invalid value for field 'resource.ports': at most 5 ports may be specified"}
	case len(ports) > 0 && (portRange != "" || allPorts), portRange != "" && allPorts:
		return &apiError{400, "invalid", "Only one of ports, portRange and allPorts may be set"}
	case internal && portRange != "":
		return &apiError{400, "invalid", "Internal passthrough forwarding rules take ports or allPorts, not portRange"}
	}
	bs, _ := obj["backendService"].(string)
	bsObj := s.lookup(bs, "backendServices")
	if bsObj == nil {
		return &apiError{400, "invalid", "The resource '" + bs + "' was not found"}
	}
	if bp, _ := bsObj["protocol"].(string); bp != "UNSPECIFIED" && bp != proto {
		return &apiError{400, "invalid", fmt.Sprintf("forwarding rule protocol %s does not match backend service protocol %s", proto, bp)}
	}
	if ip, _ := obj["IPAddress"].(string); ip != "" {
		var addr Object
		for _, e := range s.coll(s.regional("addresses")) {
			if e.obj["address"] == ip && !e.pendingCreate {
				addr = e.obj
			}
		}
		if addr == nil {
			return &apiError{400, "invalid", "IP address " + ip + " is not reserved in this region"}
		}
		if (addr["addressType"] == "INTERNAL") != internal {
			return &apiError{400, "invalid", "address type does not match the load balancing scheme"}
		}
		sharing := 0
		for _, e := range s.coll(s.regional("forwardingRules")) {
			if e.obj["IPAddress"] != ip {
				continue
			}
			sharing++
			if e.obj["IPProtocol"] == proto {
				return &apiError{400, "invalid", "another forwarding rule already uses " + ip + " for " + proto}
			}
		}
		// Internal forwarding rules share an IP address only when the
		// address has purpose SHARED_LOADBALANCER_VIP, and at most ten do
		// (https://cloud.google.com/load-balancing/docs/internal/multiple-forwarding-rules-same-ip).
		if internal && sharing > 0 && addr["purpose"] != "SHARED_LOADBALANCER_VIP" {
			return &apiError{400, "invalid", "Invalid value for field 'resource.IPAddress': '" + ip + "'. IP address is already in use by another forwarding rule; internal forwarding rules share an address only when its purpose is SHARED_LOADBALANCER_VIP"}
		}
		if internal && sharing >= 10 {
			return &apiError{400, "invalid", "Invalid value for field 'resource.IPAddress': '" + ip + "'. At most 10 forwarding rules may share an address"}
		}
	} else {
		obj["IPAddress"] = s.allocate(internal).String()
	}
	if !internal {
		if _, ok := obj["networkTier"]; !ok {
			obj["networkTier"] = "PREMIUM"
		}
	}
	obj["fingerprint"] = s.fingerprint()
	obj["region"] = s.selfLink("regions/" + s.opts.Region)
	return nil
}

func (s *Server) validateBackendService(obj Object, name string) *apiError {
	for _, hc := range strs(obj["healthChecks"]) {
		if s.lookup(hc, "healthChecks") == nil {
			return &apiError{400, "invalid", "The resource '" + hc + "' was not found"}
		}
	}
	mine := map[string]bool{}
	for _, b := range list(obj["backends"]) {
		g, _ := b["group"].(string)
		if s.lookup(g, "instanceGroups") == nil {
			return &apiError{400, "invalid", "The resource '" + g + "' was not found"}
		}
		mine[relOf(g)] = true
	}
	// An instance may belong to at most one load-balanced instance group.
	for _, e := range s.coll(s.regional("backendServices")) {
		if e.obj["name"] == name {
			continue
		}
		for _, b := range list(e.obj["backends"]) {
			other := relOf(b["group"].(string))
			if mine[other] {
				continue
			}
			for g := range mine {
				for inst := range s.members[g] {
					if s.members[other][inst] {
						return &apiError{400, "instanceInMultipleLoadBalancedIgs", "Validation failed for instance '" + inst + "': instance may belong to at most one load-balanced instance group."}
					}
				}
			}
		}
	}
	obj["region"] = s.selfLink("regions/" + s.opts.Region)
	return nil
}

// validateFirewallProject refuses a firewall rule created in a project that
// does not own its network: in a Shared VPC the rules of the shared network
// live in the host project and service projects cannot create them
// (https://cloud.google.com/vpc/docs/shared-vpc#firewall_rules); a resource
// cannot reference another project's network
// ("Cross project referencing is not allowed for this resource").
func (s *Server) validateFirewallProject(coll string, obj Object) *apiError {
	fwProject := s.opts.Project
	if strings.HasPrefix(coll, "projects/") {
		fwProject = strings.Split(coll, "/")[1]
	}
	network := relOf(str(obj["network"]))
	if network == "" {
		network = "projects/" + fwProject + "/global/networks/default"
	}
	netProject := strings.Split(strings.TrimPrefix(network, "projects/"), "/")[0]
	owner := s.opts.Project
	if s.opts.HostProject != "" {
		owner = s.opts.HostProject
	}
	switch {
	case netProject != owner:
		return &apiError{404, "notFound", "The resource '" + network + "' was not found"}
	case fwProject != netProject:
		return &apiError{400, "invalid", "Invalid value for field 'resource.network': '" + network + "'. Cross project referencing is not allowed for this resource."}
	}
	return nil
}

func validateFirewall(obj Object) *apiError {
	for _, f := range []string{"sourceRanges", "destinationRanges"} {
		for _, c := range strs(obj[f]) {
			if _, err := netip.ParsePrefix(c); err != nil {
				if _, err := netip.ParseAddr(c); err != nil {
					return &apiError{400, "invalid", "Invalid value for field '" + f + "': " + c}
				}
			}
		}
	}
	if len(list(obj["allowed"])) == 0 && len(list(obj["denied"])) == 0 {
		return &apiError{400, "required", "a firewall rule needs allowed or denied"}
	}
	return nil
}

// lookup finds a visible object by self link or partial URL.
func (s *Server) lookup(link, kind string) Object {
	r := relOf(link)
	prefix := s.rel("")
	if !strings.HasPrefix(r, prefix) {
		return nil
	}
	path := strings.TrimPrefix(r, prefix)
	i := strings.LastIndex(path, "/")
	if i < 0 || !strings.HasSuffix(path[:i], "/"+kind) && path[:i] != kind {
		return nil
	}
	e, ok := s.coll(path[:i])[path[i+1:]]
	if !ok || e.pendingCreate {
		return nil
	}
	return e.obj
}

// relOf strips scheme, host and API version from a link.
func relOf(link string) string {
	if i := strings.Index(link, "projects/"); i >= 0 {
		return link[i:]
	}
	return link
}

func (s *Server) delete(scope, coll, kind, name string) (Object, *apiError) {
	e, ok := s.coll(coll)[name]
	if !ok || e.pendingCreate {
		return nil, notFound(coll, name)
	}
	self := relOf(e.obj["selfLink"].(string))
	if user := s.referrer(kind, self, e.obj); user != "" {
		return nil, &apiError{400, "resourceInUseByAnotherResource", fmt.Sprintf("The %s resource '%s' is already being used by '%s'", kind, self, user)}
	}
	e.pendingDelete = true
	return s.startOp(scope, "delete", coll+"/"+name, func() *apiError {
		delete(s.coll(coll), name)
		if kind == "instanceGroups" {
			delete(s.members, self)
		}
		if kind == "backendServices" {
			for k := range s.probed {
				if strings.HasPrefix(k, name+"|") {
					delete(s.probed, k)
				}
			}
		}
		return nil
	}), nil
}

// referrer names a resource that still references the one being deleted.
func (s *Server) referrer(kind, self string, obj Object) string {
	switch kind {
	case "addresses":
		for _, e := range s.coll(s.regional("forwardingRules")) {
			if e.obj["IPAddress"] == obj["address"] {
				return e.obj["name"].(string)
			}
		}
	case "backendServices":
		for _, e := range s.coll(s.regional("forwardingRules")) {
			if relOf(str(e.obj["backendService"])) == self {
				return e.obj["name"].(string)
			}
		}
	case "healthChecks", "instanceGroups":
		for _, e := range s.coll(s.regional("backendServices")) {
			if kind == "healthChecks" {
				for _, hc := range strs(e.obj["healthChecks"]) {
					if relOf(hc) == self {
						return e.obj["name"].(string)
					}
				}
				continue
			}
			for _, b := range list(e.obj["backends"]) {
				if relOf(str(b["group"])) == self {
					return e.obj["name"].(string)
				}
			}
		}
	}
	return ""
}

func (s *Server) update(scope, coll, kind, name string, body Object, patch bool) (Object, *apiError) {
	e, ok := s.coll(coll)[name]
	if !ok || e.pendingCreate {
		return nil, notFound(coll, name)
	}
	if kind != "backendServices" && kind != "healthChecks" && kind != "firewalls" {
		return nil, &apiError{400, "invalid", "the fake cannot update " + kind}
	}
	if kind == "backendServices" {
		fp, _ := body["fingerprint"].(string)
		if fp == "" {
			return nil, &apiError{400, "required", "Required field 'fingerprint' not specified"}
		}
		if fp != e.obj["fingerprint"] {
			return nil, &apiError{412, "conditionNotMet", "Supplied fingerprint does not match current metadata fingerprint."}
		}
	}
	next := clone(e.obj)
	if !patch {
		next = Object{}
		for _, k := range []string{"id", "selfLink", "creationTimestamp", "kind", "region", "name"} {
			next[k] = e.obj[k]
		}
	}
	for k, v := range body {
		if k == "id" || k == "selfLink" || k == "name" || k == "creationTimestamp" {
			continue
		}
		next[k] = v
	}
	if d, _ := next["description"].(string); len(d) > maxDescription {
		return nil, &apiError{400, "invalid", fmt.Sprintf("Invalid value for field 'resource.description': longer than %d characters", maxDescription)}
	}
	var err *apiError
	switch kind {
	case "backendServices":
		if next["loadBalancingScheme"] != e.obj["loadBalancingScheme"] {
			return nil, &apiError{400, "invalid", "loadBalancingScheme cannot be changed"}
		}
		// A backend service's protocol cannot change while a forwarding
		// rule references it: the rule would keep the old protocol.
		// cloud-provider-gcp deletes the rule first for this reason
		// (providers/gce/gce_loadbalancer_internal.go, ensureInternalLoadBalancer:
		// "changing protocol of backend service without first deleting
		// forwarding rule will throw an error");
		// https://cloud.google.com/load-balancing/docs/internal#forwarding_rule_protocols.
		if next["protocol"] != e.obj["protocol"] {
			self := relOf(str(e.obj["selfLink"]))
			for _, fr := range s.coll(s.regional("forwardingRules")) {
				if relOf(str(fr.obj["backendService"])) == self {
					return nil, &apiError{400, "resourceInUseByAnotherResource", fmt.Sprintf("The backend service resource '%s' is already being used by '%s': its protocol cannot change while a forwarding rule uses it", self, str(fr.obj["name"]))}
				}
			}
		}
		err = s.validateBackendService(next, name)
		next["fingerprint"] = s.fingerprint()
	case "firewalls":
		err = validateFirewall(next)
	}
	if err != nil {
		return nil, err
	}
	return s.startOp(scope, map[bool]string{true: "patch", false: "update"}[patch], coll+"/"+name, func() *apiError {
		e.obj = next
		if kind == "backendServices" {
			s.startProbing(name)
		}
		return nil
	}), nil
}

func (s *Server) setLabels(scope, coll, name string, body Object) (Object, *apiError) {
	e, ok := s.coll(coll)[name]
	if !ok || e.pendingCreate {
		return nil, notFound(coll, name)
	}
	fp, _ := body["labelFingerprint"].(string)
	if fp == "" {
		return nil, &apiError{400, "required", "Required field 'labelFingerprint' not specified"}
	}
	if fp != e.obj["labelFingerprint"] {
		return nil, &apiError{412, "conditionNotMet", "Labels fingerprint either invalid or resource labels have changed"}
	}
	labels := body["labels"]
	if err := validateLabels(labels); err != nil {
		return nil, err
	}
	nfp := s.fingerprint()
	return s.startOp(scope, "setLabels", coll+"/"+name, func() *apiError {
		e.obj["labels"] = labels
		e.obj["labelFingerprint"] = nfp
		return nil
	}), nil
}

func (s *Server) listInstances(coll, name string, r *http.Request) (Object, *apiError) {
	if _, err := s.get(coll, name); err != nil {
		return nil, err
	}
	var keys []string
	for l := range s.members[s.rel(coll+"/"+name)] {
		keys = append(keys, l)
	}
	sort.Strings(keys)
	page, next := s.page(keys, r)
	items := []any{}
	for _, l := range page {
		items = append(items, map[string]any{"instance": s.srv.URL + "/compute/v1/" + l, "status": "RUNNING"})
	}
	out := Object{"kind": "compute#instanceGroupsListInstances", "items": items}
	if next != "" {
		out["nextPageToken"] = next
	}
	return out, nil
}

// getHealth reports the health of a backend group's instances, as probed
// by the backend service's health check.
func (s *Server) getHealth(coll, name string, body Object) (Object, *apiError) {
	bs, err := s.get(coll, name)
	if err != nil {
		return nil, err
	}
	group := relOf(str(body["group"]))
	used := false
	for _, b := range list(bs["backends"]) {
		used = used || relOf(str(b["group"])) == group
	}
	if !used {
		return nil, &apiError{400, "invalid", "group " + group + " is not a backend of " + name}
	}
	var keys []string
	for l := range s.members[group] {
		keys = append(keys, l)
	}
	sort.Strings(keys)
	statuses := []any{}
	for _, l := range keys {
		state := s.health[l]
		if since, ok := s.probed[name+"|"+l]; state == "" && s.opts.HealthyAfter > 0 && (!ok || time.Since(since) < s.opts.HealthyAfter) {
			state = "UNHEALTHY"
		}
		if state == "" {
			state = "HEALTHY"
		}
		statuses = append(statuses, map[string]any{"instance": s.srv.URL + "/compute/v1/" + l, "healthState": state})
	}
	return Object{"kind": "compute#backendServiceGroupHealth", "healthStatus": statuses}, nil
}

func (s *Server) changeMembers(scope, coll, name string, body Object, add bool) (Object, *apiError) {
	if _, err := s.get(coll, name); err != nil {
		return nil, err
	}
	group := s.rel(coll + "/" + name)
	var links []string
	for _, i := range list(body["instances"]) {
		l := relOf(str(i["instance"]))
		if !s.instances[l] {
			return nil, &apiError{400, "invalid", "The resource '" + l + "' was not found"}
		}
		if !strings.HasPrefix(l, s.rel(scope+"/instances/")) {
			return nil, &apiError{400, "invalid", "instance " + l + " is not in the group's zone"}
		}
		if add && s.members[group][l] {
			return nil, &apiError{400, "memberAlreadyExists", "instance " + l + " is already a member of " + name}
		}
		if !add && !s.members[group][l] {
			return nil, &apiError{400, "invalid", "instance " + l + " is not a member of " + name}
		}
		// An instance may belong to at most one load-balanced instance
		// group: adding it to a group a backend service uses while another
		// used group holds it is refused
		// (https://cloud.google.com/compute/docs/instance-groups/creating-groups-of-unmanaged-instances,
		// "an instance can belong to only one load-balanced unmanaged instance group").
		if add && s.loadBalanced(group) {
			for other, m := range s.members {
				if other != group && m[l] && s.loadBalanced(other) {
					return nil, &apiError{400, "instanceInMultipleLoadBalancedIgs", "Validation failed for instance '" + l + "': instance may belong to at most one load-balanced instance group."}
				}
			}
		}
		links = append(links, l)
	}
	verb := map[bool]string{true: "addInstances", false: "removeInstances"}[add]
	return s.startOp(scope, verb, coll+"/"+name, func() *apiError {
		if s.members[group] == nil {
			s.members[group] = map[string]bool{}
		}
		for _, l := range links {
			if add {
				s.members[group][l] = true
			} else {
				delete(s.members[group], l)
			}
		}
		for bs, e := range s.coll(s.regional("backendServices")) {
			for _, b := range list(e.obj["backends"]) {
				if relOf(str(b["group"])) == group {
					s.startProbing(bs)
				}
			}
		}
		return nil
	}), nil
}

// startProbing notes when the backend service named bs starts health
// checking each instance of its groups; s.mu is held.
func (s *Server) startProbing(bs string) {
	e, ok := s.coll(s.regional("backendServices"))[bs]
	if !ok {
		return
	}
	now := time.Now()
	for _, b := range list(e.obj["backends"]) {
		for inst := range s.members[relOf(str(b["group"]))] {
			if _, ok := s.probed[bs+"|"+inst]; !ok {
				s.probed[bs+"|"+inst] = now
			}
		}
	}
}

// loadBalanced reports whether a backend service uses the group (a rel link).
func (s *Server) loadBalanced(group string) bool {
	for _, e := range s.coll(s.regional("backendServices")) {
		for _, b := range list(e.obj["backends"]) {
			if relOf(str(b["group"])) == group {
				return true
			}
		}
	}
	return false
}

func clone(o Object) Object {
	raw, _ := json.Marshal(o)
	var out Object
	_ = json.Unmarshal(raw, &out)
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func strs(v any) []string {
	var out []string
	for _, x := range anySlice(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func list(v any) []map[string]any {
	var out []map[string]any
	for _, x := range anySlice(v) {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

// parseFilter understands the two list filter forms Portico sends
// (https://cloud.google.com/compute/docs/reference/rest/v1/addresses/list#query-parameters):
// `<field> = "<value>"` and `<field> eq <RE2 regular expression>` (which
// must match the whole value).
func parseFilter(f string) (func(Object) bool, *apiError) {
	f = strings.TrimSpace(f)
	if f == "" {
		return func(Object) bool { return true }, nil
	}
	if field, val, ok := strings.Cut(f, " = "); ok {
		val = strings.Trim(strings.TrimSpace(val), `"`)
		field = strings.TrimSpace(field)
		return func(o Object) bool { return fmt.Sprint(o[field]) == val }, nil
	}
	if field, expr, ok := strings.Cut(f, " eq "); ok {
		re, err := regexp.Compile("^(?:" + strings.Trim(strings.TrimSpace(expr), `"'`) + ")$")
		if err != nil {
			return nil, &apiError{400, "invalid", "Invalid list filter expression: " + f}
		}
		field = strings.TrimSpace(field)
		return func(o Object) bool { return re.MatchString(fmt.Sprint(o[field])) }, nil
	}
	return nil, &apiError{400, "invalid", "Invalid list filter expression: " + f}
}
