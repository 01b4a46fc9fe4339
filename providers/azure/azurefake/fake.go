// Package azurefake is an in-process fake of the Azure Resource Manager
// endpoints Portico's azure provider uses: load balancers, public IP
// addresses, network security groups and their security rules
// (Microsoft.Network). It speaks ARM's wire protocol over TLS, so the real
// azure-sdk-for-go clients talk to it through cloud.Configuration:
//
//   - PUT and DELETE are long-running operations. PUT answers 201/200 with an
//     Azure-AsyncOperation header; DELETE answers 202 with Azure-AsyncOperation
//     and Location headers, as Microsoft.Network does. An operation stays
//     InProgress for Options.OperationLatency (or the fault core's operation
//     delay, whichever is longer) and completes whether or not anyone polls,
//     as in Azure.
//   - Every resource carries an ETag; If-Match with a stale ETag and
//     If-None-Match: * on an existing resource fail with 412.
//   - A write to a resource with an operation in progress fails with 409
//     AnotherOperationInProgress; GET of a missing resource is 404
//     ResourceNotFound; DELETE of a missing resource is 204.
//   - References are checked: a frontend must name an existing public IP or
//     a subnet, a rule must name a frontend, pool and probe of its own load
//     balancer, a public IP cannot serve two frontends nor be deleted while a
//     frontend uses it, two security rules cannot share a priority.
//   - Faults come from the shared core, internal/fault (Faults returns its
//     Injector): request faults map to ARM's wire shapes (Throttle: 429
//     SubscriptionRequestsThrottled with Retry-After; ServerError: 500
//     InternalServerError; Unavailable: 503; Slow: 504 after the delay;
//     Crash: 503 until Recover), and operations the core fails end with
//     status Failed or Canceled and the error ARM reports for them (see
//     operationError).
//   - Requests ARM refuses are refused here too, each rule citing its
//     documentation (rules.go): names, tags, descriptions, references,
//     limits.
package azurefake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/internal/fault"
)

// Resource kinds as listed by Resources.
const (
	KindLoadBalancer  = "loadBalancer"
	KindPublicIP      = "publicIPAddress"
	KindSecurityGroup = "networkSecurityGroup"
	KindSecurityRule  = "securityRule"
	KindFrontend      = "frontendIPConfiguration"
	KindRule          = "loadBalancingRule"
	KindProbe         = "probe"
	KindBackendPool   = "backendAddressPool"
)

// Options configure the fake.
type Options struct {
	// OperationLatency is how long a PUT or DELETE stays in progress at
	// least; the fault core's operation delay can make it longer.
	OperationLatency time.Duration
	// PageSize bounds list responses; the rest follows through nextLink.
	// Zero means 2, so that pagination is always exercised.
	PageSize int
	// PublicRange and PrivateRange are where public IPs and dynamic private
	// frontend IPs come from (defaults 20.60.0.0/16 and 10.240.0.0/16).
	PublicRange, PrivateRange netip.Prefix
	// Faults is the fault core the fake asks about every request and
	// operation; nil means a new one (seed 1).
	Faults *fault.Injector
	// Limits lowers Azure's documented limits for tests that must reach
	// them cheaply; zero fields keep Azure's values (see rules.go).
	Limits Limits
}

// Limits are the per-resource limits the fake enforces.
type Limits struct {
	FrontendsPerLoadBalancer int
	RulesPerLoadBalancer     int
	AddressesPerPool         int
	RulesPerSecurityGroup    int
}

// Resource is one object in the fake, for assertions.
type Resource struct {
	Kind string
	ID   string
	Name string
	// Parent is the load balancer or security group ID of a child.
	Parent string
	// Tags are the resource's tags; children report their parent's.
	Tags map[string]string
}

// Stats counts requests by their effect.
type Stats struct {
	Requests           int
	Mutating           int // PUT, PATCH, DELETE received
	LoadBalancerWrites int // PUT and DELETE of load balancers received
	PreconditionFailed int // 412 answers
	Conflicts          int // 409 answers
	Throttled          int // injected 429 answers
	ServerErrors       int // injected 5xx answers
	OperationsFailed   int // operations ended Failed or Canceled by injection
}

// Call is one request the fake received, with the fields Azure's activity
// log records for it: the caller (here the bearer token, which identifies
// the client in tests), the operation (method) and the resource ID (path)
// (https://learn.microsoft.com/azure/azure-monitor/essentials/activity-log-schema).
type Call struct {
	Caller   string
	Method   string
	Path     string
	Mutating bool
}

type object struct {
	id    string // canonical case, as created
	kind  string
	value any // *armnetwork.LoadBalancer, *PublicIPAddress, *SecurityGroup, *SecurityRule
	etag  string
	busy  string // operation ID in progress, "" when idle
}

type operation struct {
	id       string
	doneAt   time.Time
	finalize func()     // on success
	undo     func()     // on failure: the resource as it was, provisioningState Failed
	fail     fault.Kind // fault.None for success
	typ      string     // resource type, for the error's wording
	done     bool
}

// Server is the fake ARM endpoint.
type Server struct {
	opts Options
	srv  *httptest.Server

	inj *fault.Injector

	mu       sync.Mutex
	objs     map[string]*object // by lower-case ID
	ops      map[string]*operation
	stats    Stats
	nextPub  netip.Addr
	nextPriv netip.Addr
	throttle time.Duration // Retry-After of injected 429s
	hook     func(*http.Request)
	// paths holds the URL path of each call the fault core recorded, in
	// the same order (both are appended under mu).
	paths []string
}

// Calls returns every request received so far, from the fault core's call
// log.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := s.inj.Calls()
	out := make([]Call, 0, len(s.paths))
	for i, c := range calls {
		if i >= len(s.paths) {
			break
		}
		method, _, _ := strings.Cut(c.Op, " ")
		out = append(out, Call{Caller: c.Caller, Method: method, Path: s.paths[i], Mutating: c.Mutating})
	}
	return out
}

// Faults returns the fault core: add request rules, fail operations, crash.
func (s *Server) Faults() *fault.Injector { return s.inj }

// New starts a fake on a TLS listener; Close stops it.
func New(opts Options) *Server {
	if opts.PageSize <= 0 {
		opts.PageSize = 2
	}
	if !opts.PublicRange.IsValid() {
		opts.PublicRange = netip.MustParsePrefix("20.60.0.0/16")
	}
	if !opts.PrivateRange.IsValid() {
		opts.PrivateRange = netip.MustParsePrefix("10.240.0.0/16")
	}
	if opts.Faults == nil {
		opts.Faults = fault.New(1)
	}
	opts.Limits = opts.Limits.withDefaults()
	s := &Server{
		opts:     opts,
		inj:      opts.Faults,
		objs:     map[string]*object{},
		ops:      map[string]*operation{},
		nextPub:  opts.PublicRange.Masked().Addr().Next(),
		nextPriv: opts.PrivateRange.Masked().Addr().Next().Next().Next().Next(), // Azure reserves .1-.3
		throttle: time.Second,
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the ARM endpoint (https://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// Client returns an HTTP client that trusts the fake's certificate; pass it
// as policy.ClientOptions.Transport.
func (s *Server) Client() *http.Client {
	c := s.srv.Client()
	if t, ok := c.Transport.(*http.Transport); ok {
		// Keep connections for many concurrent callers instead of
		// handshaking TLS again for every request.
		t.MaxIdleConnsPerHost = 256
	}
	return c
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// InjectThrottle answers the next n requests with 429 and Retry-After
// (fault.Throttle rules of the core).
func (s *Server) InjectThrottle(n int, retryAfter time.Duration) {
	s.setRetryAfter(retryAfter)
	s.inj.Add(fault.Rule{Kind: fault.Throttle, Times: n})
}

// InjectServerErrors answers the next n requests with 500.
func (s *Server) InjectServerErrors(n int) {
	s.inj.Add(fault.Rule{Kind: fault.ServerError, Times: n})
}

// SetThrottleRate throttles each request with probability p.
func (s *Server) SetThrottleRate(p float64, retryAfter time.Duration) {
	s.setRetryAfter(retryAfter)
	s.inj.Add(fault.Rule{Kind: fault.Throttle, Rate: p})
}

func (s *Server) setRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = d
}

// CrashAfter lets n more mutating requests through, then fails every request
// with 503 until Recover, as if the caller had died.
func (s *Server) CrashAfter(n int) { s.inj.CrashAfter(n) }

// Crashed reports whether an injected crash has happened and not been
// recovered from.
func (s *Server) Crashed() bool { return s.inj.Crashed() }

// Recover clears every injected request fault (operation rules stay; see
// fault.Injector.ClearOperations).
func (s *Server) Recover() { s.inj.Recover() }

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	fs := s.inj.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.Requests, out.Mutating = fs.Calls, fs.Mutating
	out.Throttled = fs.Injected[fault.Throttle]
	out.ServerErrors = fs.Injected[fault.ServerError] + fs.Injected[fault.Unavailable]
	out.OperationsFailed = fs.OperationsFailed
	return out
}

// Settle completes every operation still in progress.
func (s *Server) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range s.ops {
		op.doneAt = time.Time{}
	}
	s.advance()
}

// AddSecurityGroup creates a network security group directly, as the
// cluster's installer would.
func (s *Server) AddSecurityGroup(subscription, resourceGroup, name string) string {
	id := resourceID(subscription, resourceGroup, "networkSecurityGroups", name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objs[strings.ToLower(id)] = &object{id: id, kind: KindSecurityGroup, etag: newETag(), value: &armnetwork.SecurityGroup{
		ID: &id, Name: &name, Type: ptr("Microsoft.Network/networkSecurityGroups"), Location: ptr("westeurope"),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{ProvisioningState: ptr(armnetwork.ProvisioningStateSucceeded)},
	}}
	return id
}

// AddPublicIP creates a public IP directly with the given tags (nil for
// none), as a user or another tool would.
func (s *Server) AddPublicIP(subscription, resourceGroup, name string, tags map[string]string) string {
	id := resourceID(subscription, resourceGroup, "publicIPAddresses", name)
	s.mu.Lock()
	defer s.mu.Unlock()
	pip := &armnetwork.PublicIPAddress{
		Location: ptr("westeurope"), Tags: toPtrMap(tags),
		SKU:        &armnetwork.PublicIPAddressSKU{Name: ptr(armnetwork.PublicIPAddressSKUNameStandard)},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic)},
	}
	s.stampPublicIP(id, name, pip)
	s.objs[strings.ToLower(id)] = &object{id: id, kind: KindPublicIP, etag: *pip.Etag, value: pip}
	return id
}

// LoadBalancer returns a copy of a load balancer, or nil.
func (s *Server) LoadBalancer(id string) *armnetwork.LoadBalancer {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objs[strings.ToLower(id)]
	if o == nil || o.kind != KindLoadBalancer {
		return nil
	}
	var out armnetwork.LoadBalancer
	clone(o.value, &out)
	return &out
}

// Resources lists every object, load balancer children included, sorted.
func (s *Server) Resources() []Resource {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	var out []Resource
	for _, o := range s.objs {
		switch v := o.value.(type) {
		case *armnetwork.LoadBalancer:
			tags := fromPtrMap(v.Tags)
			out = append(out, Resource{Kind: KindLoadBalancer, ID: o.id, Name: deref(v.Name), Tags: tags})
			if p := v.Properties; p != nil {
				for _, c := range p.FrontendIPConfigurations {
					out = append(out, Resource{Kind: KindFrontend, ID: deref(c.ID), Name: deref(c.Name), Parent: o.id, Tags: tags})
				}
				for _, c := range p.LoadBalancingRules {
					out = append(out, Resource{Kind: KindRule, ID: deref(c.ID), Name: deref(c.Name), Parent: o.id, Tags: tags})
				}
				for _, c := range p.Probes {
					out = append(out, Resource{Kind: KindProbe, ID: deref(c.ID), Name: deref(c.Name), Parent: o.id, Tags: tags})
				}
				for _, c := range p.BackendAddressPools {
					out = append(out, Resource{Kind: KindBackendPool, ID: deref(c.ID), Name: deref(c.Name), Parent: o.id, Tags: tags})
				}
			}
		case *armnetwork.PublicIPAddress:
			out = append(out, Resource{Kind: KindPublicIP, ID: o.id, Name: deref(v.Name), Tags: fromPtrMap(v.Tags)})
		case *armnetwork.SecurityGroup:
			out = append(out, Resource{Kind: KindSecurityGroup, ID: o.id, Name: deref(v.Name), Tags: fromPtrMap(v.Tags)})
		case *armnetwork.SecurityRule:
			parent := o.id[:strings.LastIndex(strings.ToLower(o.id), "/securityrules/")]
			out = append(out, Resource{Kind: KindSecurityRule, ID: o.id, Name: deref(v.Name), Parent: parent})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].ID < out[j].Kind+out[j].ID })
	return out
}

// SecurityRule returns a copy of a security rule, or nil.
func (s *Server) SecurityRule(id string) *armnetwork.SecurityRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objs[strings.ToLower(id)]
	if o == nil || o.kind != KindSecurityRule {
		return nil
	}
	var out armnetwork.SecurityRule
	clone(o.value, &out)
	return &out
}

// --- request handling ---

// path is a parsed ARM path.
type path struct {
	sub, rg, typ, name, childTyp, child string
	// operation polling
	opKind, opID string
}

func parsePath(p string) (path, bool) {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	for i := range seg {
		if u, err := url.PathUnescape(seg[i]); err == nil {
			seg[i] = u
		}
	}
	switch {
	case len(seg) == 8 && eq(seg[0], "subscriptions") && eq(seg[2], "providers") && eq(seg[4], "locations"):
		return path{sub: seg[1], opKind: strings.ToLower(seg[6]), opID: seg[7]}, true
	case len(seg) >= 7 && eq(seg[0], "subscriptions") && eq(seg[2], "resourceGroups") && eq(seg[4], "providers") && eq(seg[5], "Microsoft.Network"):
		out := path{sub: seg[1], rg: seg[3], typ: seg[6]}
		switch len(seg) {
		case 7:
			return out, true
		case 8:
			out.name = seg[7]
			return out, true
		case 9:
			out.name, out.childTyp = seg[7], seg[8]
			return out, true
		case 10:
			out.name, out.childTyp, out.child = seg[7], seg[8], seg[9]
			return out, true
		}
	}
	return path{}, false
}

func eq(a, b string) bool { return strings.EqualFold(a, b) }

// SetHook runs fn before every request is handled, outside the fake's lock,
// so that a test can interleave other calls at an exact point.
func (s *Server) SetHook(fn func(*http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = fn
}

func (s *Server) serve(rw http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	mutating := r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodDelete
	p, ok := parsePath(r.URL.Path)
	req := fault.Request{
		Service:  "Microsoft.Network",
		Op:       r.Method + " " + operationName(r.Method, p, ok),
		Mutating: mutating,
		Caller:   strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "),
	}
	w := &recorder{ResponseWriter: rw}
	d := s.inj.Decide(req)
	if d.Kind == fault.Slow {
		// Too late for the caller; the request is not applied.
		time.Sleep(d.Delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		// The call log's outcome: the injected fault's kind, else the ARM
		// error code the fake answered ("" for success).
		outcome := w.code
		if d.Kind != fault.None {
			outcome = string(d.Kind)
		}
		s.inj.Record(req, outcome)
		s.paths = append(s.paths, r.URL.Path)
	}()
	s.advance()
	if ok && mutating && eq(p.typ, "loadBalancers") && p.childTyp == "" {
		s.stats.LoadBalancerWrites++
	}
	if s.fault(w, d.Kind) {
		return
	}
	if !ok {
		armError(w, http.StatusBadRequest, "InvalidRequestUri", "the fake does not serve "+r.URL.Path)
		return
	}
	if p.opID != "" {
		s.serveOperation(w, p)
		return
	}
	switch {
	case eq(p.typ, "loadBalancers") && p.name != "" && p.childTyp == "":
		s.serveTopLevel(w, r, p, KindLoadBalancer)
	case eq(p.typ, "publicIPAddresses") && p.name != "" && p.childTyp == "":
		s.serveTopLevel(w, r, p, KindPublicIP)
	case eq(p.typ, "networkSecurityGroups") && p.name != "" && p.childTyp == "":
		s.serveTopLevel(w, r, p, KindSecurityGroup)
	case eq(p.typ, "loadBalancers") && p.name == "" && r.Method == http.MethodGet:
		prefix := strings.ToLower(resourceID(p.sub, p.rg, "loadBalancers", ""))
		s.list(w, r, func(k string, o *object) bool { return o.kind == KindLoadBalancer && strings.HasPrefix(k, prefix) })
	case eq(p.typ, "publicIPAddresses") && p.name == "" && r.Method == http.MethodGet:
		prefix := strings.ToLower(resourceID(p.sub, p.rg, "publicIPAddresses", ""))
		s.list(w, r, func(k string, o *object) bool { return o.kind == KindPublicIP && strings.HasPrefix(k, prefix) })
	case eq(p.typ, "networkSecurityGroups") && eq(p.childTyp, "securityRules") && p.child == "" && r.Method == http.MethodGet:
		nsgID := resourceID(p.sub, p.rg, "networkSecurityGroups", p.name)
		if s.objs[strings.ToLower(nsgID)] == nil {
			armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource '%s' was not found.", nsgID))
			return
		}
		prefix := strings.ToLower(nsgID) + "/securityrules/"
		s.list(w, r, func(k string, _ *object) bool { return strings.HasPrefix(k, prefix) })
	case eq(p.typ, "networkSecurityGroups") && eq(p.childTyp, "securityRules") && p.child != "":
		s.serveTopLevel(w, r, p, KindSecurityRule)
	default:
		armError(w, http.StatusBadRequest, "InvalidRequestUri", "the fake does not serve "+r.URL.Path)
	}
}

// Operation names of the fault core's requests and call log: the HTTP
// method and the ARM operation, as the activity log names it
// (https://learn.microsoft.com/azure/role-based-access-control/resource-provider-operations#microsoftnetwork),
// e.g. "PUT Microsoft.Network/loadBalancers/write". Rules match them
// exactly (fault.Rule.Op, fault.OpRule.Op).
const (
	OpLoadBalancerWrite   = "PUT Microsoft.Network/loadBalancers/write"
	OpLoadBalancerDelete  = "DELETE Microsoft.Network/loadBalancers/delete"
	OpPublicIPWrite       = "PUT Microsoft.Network/publicIPAddresses/write"
	OpPublicIPDelete      = "DELETE Microsoft.Network/publicIPAddresses/delete"
	OpSecurityRuleWrite   = "PUT Microsoft.Network/networkSecurityGroups/securityRules/write"
	OpSecurityRuleDelete  = "DELETE Microsoft.Network/networkSecurityGroups/securityRules/delete"
	OpLoadBalancerRead    = "GET Microsoft.Network/loadBalancers/read"
	OpOperationStatusRead = "GET Microsoft.Network/locations/operations/read"
)

func operationName(method string, p path, ok bool) string {
	if !ok {
		return "unknown"
	}
	if p.opID != "" {
		if p.opKind == "operationresults" {
			return "Microsoft.Network/locations/operationResults/read"
		}
		return "Microsoft.Network/locations/operations/read"
	}
	typ := "Microsoft.Network/" + canonicalType(p.typ)
	if p.childTyp != "" {
		typ += "/" + canonicalType(p.childTyp)
	}
	switch method {
	case http.MethodGet:
		return typ + "/read"
	case http.MethodDelete:
		return typ + "/delete"
	}
	return typ + "/write"
}

func canonicalType(t string) string {
	for _, c := range []string{"loadBalancers", "publicIPAddresses", "networkSecurityGroups", "securityRules"} {
		if eq(t, c) {
			return c
		}
	}
	return t
}

// recorder remembers the ARM error code of the answer for the call log.
type recorder struct {
	http.ResponseWriter
	code string
}

func (r *recorder) WriteHeader(status int) {
	if status >= 400 {
		r.code = cmpOr(r.Header().Get("x-ms-error-code"), strconv.Itoa(status))
	}
	r.ResponseWriter.WriteHeader(status)
}

// fault answers the request with the wire shape of an injected fault and
// reports whether it did.
func (s *Server) fault(w http.ResponseWriter, k fault.Kind) bool {
	switch k {
	case fault.None:
		return false
	case fault.Crash:
		armError(w, http.StatusServiceUnavailable, "InjectedCrash", "the caller crashed (injected)")
	case fault.Throttle:
		// https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling#error-code
		w.Header().Set("Retry-After", strconv.Itoa(int((s.throttle+time.Second-1)/time.Second)))
		if s.throttle%time.Second != 0 {
			// Sub-second delays (benchmarks that run Azure time faster)
			// also go out in the header the SDK prefers.
			w.Header().Set("Retry-After-Ms", strconv.FormatInt(s.throttle.Milliseconds(), 10))
		}
		armError(w, http.StatusTooManyRequests, "SubscriptionRequestsThrottled", "Number of requests for subscription exceeded the limit (injected)")
	case fault.ServerError:
		armError(w, http.StatusInternalServerError, "InternalServerError", "an internal error occurred (injected)")
	case fault.Unavailable:
		armError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the service is unavailable (injected)")
	case fault.Slow:
		armError(w, http.StatusGatewayTimeout, "GatewayTimeout", "the gateway did not receive a response in time (injected)")
	default:
		armError(w, http.StatusInternalServerError, "InternalServerError", "injected "+string(k))
	}
	return true
}

func (s *Server) resourcePath(p path) string {
	switch {
	case eq(p.typ, "loadBalancers"):
		return resourceID(p.sub, p.rg, "loadBalancers", p.name)
	case eq(p.typ, "publicIPAddresses"):
		return resourceID(p.sub, p.rg, "publicIPAddresses", p.name)
	case p.child != "":
		return resourceID(p.sub, p.rg, "networkSecurityGroups", p.name) + "/securityRules/" + p.child
	default:
		return resourceID(p.sub, p.rg, "networkSecurityGroups", p.name)
	}
}

func (s *Server) serveTopLevel(w http.ResponseWriter, r *http.Request, p path, kind string) {
	id := s.resourcePath(p)
	key := strings.ToLower(id)
	o := s.objs[key]
	switch r.Method {
	case http.MethodGet:
		if o == nil {
			armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource '%s' was not found.", id))
			return
		}
		s.writeObject(w, http.StatusOK, o)
	case http.MethodPut:
		if !s.preconditions(w, r, o) {
			return
		}
		if o != nil && o.busy != "" {
			s.stats.Conflicts++
			armError(w, http.StatusConflict, "AnotherOperationInProgress", "Another operation on this or dependent resource is in progress.")
			return
		}
		s.put(w, r, p, id, kind, o)
	case http.MethodPatch:
		if o == nil {
			armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource '%s' was not found.", id))
			return
		}
		if !s.preconditions(w, r, o) {
			return
		}
		s.patchTags(w, r, o)
	case http.MethodDelete:
		if o == nil {
			if r.Header.Get("If-Match") != "" && r.Header.Get("If-Match") != "*" {
				s.stats.PreconditionFailed++
				armError(w, http.StatusPreconditionFailed, "PreconditionFailed", "the resource does not exist")
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !s.preconditions(w, r, o) {
			return
		}
		if o.busy != "" {
			s.stats.Conflicts++
			armError(w, http.StatusConflict, "AnotherOperationInProgress", "Another operation on this or dependent resource is in progress.")
			return
		}
		s.delete(w, r, p, o)
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

func (s *Server) preconditions(w http.ResponseWriter, r *http.Request, o *object) bool {
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && (o == nil || m != o.etag) {
		s.stats.PreconditionFailed++
		armError(w, http.StatusPreconditionFailed, "PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")
		return false
	}
	if m := r.Header.Get("If-Match"); m == "*" && o == nil {
		s.stats.PreconditionFailed++
		armError(w, http.StatusPreconditionFailed, "PreconditionFailed", "The resource does not exist.")
		return false
	}
	if r.Header.Get("If-None-Match") == "*" && o != nil {
		s.stats.PreconditionFailed++
		armError(w, http.StatusPreconditionFailed, "PreconditionFailed", "The resource already exists.")
		return false
	}
	return true
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, p path, id, kind string, old *object) {
	var value any
	var location string
	var err *armErr
	name := p.name
	if p.child != "" {
		name = p.child
	}
	switch kind {
	case KindLoadBalancer:
		var lb armnetwork.LoadBalancer
		if decodeErr := json.NewDecoder(r.Body).Decode(&lb); decodeErr != nil {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", decodeErr.Error())
			return
		}
		err = firstErr(validateName("loadBalancers", name), validateLoadBalancerRules(&lb, s.opts.Limits))
		if err == nil {
			err = s.stampLoadBalancer(id, name, &lb, old)
		}
		value, location = &lb, deref(lb.Location)
	case KindPublicIP:
		var pip armnetwork.PublicIPAddress
		if decodeErr := json.NewDecoder(r.Body).Decode(&pip); decodeErr != nil {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", decodeErr.Error())
			return
		}
		if old != nil {
			prev := old.value.(*armnetwork.PublicIPAddress)
			if pip.Properties == nil {
				pip.Properties = &armnetwork.PublicIPAddressPropertiesFormat{}
			}
			pip.Properties.IPAddress = prev.Properties.IPAddress
		}
		err = firstErr(validateName("publicIPAddresses", name), validateTags(pip.Tags), s.validatePublicIP(&pip))
		if err == nil {
			s.stampPublicIP(id, name, &pip)
		}
		value, location = &pip, deref(pip.Location)
	case KindSecurityGroup:
		var nsg armnetwork.SecurityGroup
		if decodeErr := json.NewDecoder(r.Body).Decode(&nsg); decodeErr != nil {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", decodeErr.Error())
			return
		}
		err = firstErr(validateName("networkSecurityGroups", name), validateTags(nsg.Tags))
		nsg.ID, nsg.Name, nsg.Type = &id, &name, ptr("Microsoft.Network/networkSecurityGroups")
		value, location = &nsg, deref(nsg.Location)
	case KindSecurityRule:
		parent := s.objs[strings.ToLower(resourceID(p.sub, p.rg, "networkSecurityGroups", p.name))]
		if parent == nil {
			armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("network security group %s not found", p.name))
			return
		}
		var rule armnetwork.SecurityRule
		if decodeErr := json.NewDecoder(r.Body).Decode(&rule); decodeErr != nil {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", decodeErr.Error())
			return
		}
		err = firstErr(validateSecurityRuleFields(name, &rule), s.validateSecurityRule(id, &rule))
		if prefix := strings.ToLower(id[:strings.LastIndex(strings.ToLower(id), "/securityrules/")]) + "/securityrules/"; err == nil && old == nil && s.securityRuleCount(prefix) >= s.opts.Limits.RulesPerSecurityGroup {
			err = badRequest("SecurityRuleCountLimitReached", "Network security group %s already has %d security rules; the limit is %d.", p.name, s.opts.Limits.RulesPerSecurityGroup, s.opts.Limits.RulesPerSecurityGroup)
		}
		rule.ID, rule.Name, rule.Type = &id, &name, ptr("Microsoft.Network/networkSecurityGroups/securityRules")
		value, location = &rule, deref(parent.value.(*armnetwork.SecurityGroup).Location)
	}
	if err != nil {
		armError(w, err.status, err.code, err.message)
		return
	}
	status := http.StatusCreated
	o := old
	var undo func()
	if o == nil {
		o = &object{id: id, kind: kind}
		s.objs[strings.ToLower(id)] = o
		// A create that fails leaves nothing behind.
		undo = func() { delete(s.objs, strings.ToLower(id)) }
	} else {
		status = http.StatusOK
		// An update that fails leaves the resource as it was, in
		// provisioningState Failed, until a later PUT succeeds
		// (https://learn.microsoft.com/azure/networking/troubleshoot-failed-state).
		prev := cloneValue(o.value)
		undo = func() {
			o.value, o.etag = prev, newETag()
			setProvisioning(o.value, armnetwork.ProvisioningStateFailed)
			setETag(o.value, o.etag)
			o.busy = ""
		}
	}
	o.value = value
	o.etag = newETag()
	setProvisioning(value, armnetwork.ProvisioningStateUpdating)
	setETag(value, o.etag)
	op := s.startOperation(http.MethodPut+" "+operationName(http.MethodPut, p, true), p.typ, func() {
		setProvisioning(o.value, armnetwork.ProvisioningStateSucceeded)
		o.busy = ""
	}, undo)
	o.busy = op.id
	if location == "" {
		location = "westeurope"
	}
	w.Header().Set("Azure-AsyncOperation", fmt.Sprintf("%s/subscriptions/%s/providers/Microsoft.Network/locations/%s/operations/%s?api-version=2024-05-01", s.srv.URL, p.sub, location, op.id))
	s.retryAfter(w)
	s.writeObject(w, status, o)
}

func (s *Server) delete(w http.ResponseWriter, _ *http.Request, p path, o *object) {
	if o.kind == KindPublicIP {
		if user := s.publicIPUser(o.id); user != "" {
			armError(w, http.StatusBadRequest, "PublicIPAddressCannotBeDeleted",
				fmt.Sprintf("Public IP address %s can not be deleted since it is still allocated to resource %s.", o.id, user))
			return
		}
	}
	if o.kind == KindSecurityGroup {
		prefix := strings.ToLower(o.id) + "/securityrules/"
		for k := range s.objs {
			if strings.HasPrefix(k, prefix) {
				delete(s.objs, k)
			}
		}
	}
	setProvisioning(o.value, armnetwork.ProvisioningStateDeleting)
	key := strings.ToLower(o.id)
	op := s.startOperation(http.MethodDelete+" "+operationName(http.MethodDelete, p, true), p.typ, func() { delete(s.objs, key) }, func() {
		// A failed delete leaves the resource in place, Failed.
		setProvisioning(o.value, armnetwork.ProvisioningStateFailed)
		o.busy = ""
	})
	o.busy = op.id
	// Microsoft.Network answers a DELETE with both headers; clients poll
	// Azure-AsyncOperation, whose status carries a failure's error
	// (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations).
	w.Header().Set("Azure-AsyncOperation", fmt.Sprintf("%s/subscriptions/%s/providers/Microsoft.Network/locations/westeurope/operations/%s?api-version=2024-05-01", s.srv.URL, p.sub, op.id))
	w.Header().Set("Location", fmt.Sprintf("%s/subscriptions/%s/providers/Microsoft.Network/locations/westeurope/operationResults/%s?api-version=2024-05-01", s.srv.URL, p.sub, op.id))
	s.retryAfter(w)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) patchTags(w http.ResponseWriter, r *http.Request, o *object) {
	var body armnetwork.TagsObject
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		armError(w, http.StatusBadRequest, "InvalidRequestContent", err.Error())
		return
	}
	if err := validateTags(body.Tags); err != nil {
		armError(w, err.status, err.code, err.message)
		return
	}
	o.etag = newETag()
	switch v := o.value.(type) {
	case *armnetwork.PublicIPAddress:
		v.Tags = body.Tags
	case *armnetwork.LoadBalancer:
		v.Tags = body.Tags
	case *armnetwork.SecurityGroup:
		v.Tags = body.Tags
	}
	setETag(o.value, o.etag)
	s.writeObject(w, http.StatusOK, o)
}

// list answers a paginated list of the objects match selects.
func (s *Server) list(w http.ResponseWriter, r *http.Request, match func(key string, o *object) bool) {
	var keys []string
	for k, o := range s.objs {
		if match(k, o) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	skip, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	skip = min(max(skip, 0), len(keys))
	end := min(skip+s.opts.PageSize, len(keys))
	page := struct {
		Value    []json.RawMessage `json:"value"`
		NextLink string            `json:"nextLink,omitempty"`
	}{Value: []json.RawMessage{}}
	for _, k := range keys[skip:end] {
		b, _ := json.Marshal(s.objs[k].value)
		page.Value = append(page.Value, b)
	}
	if end < len(keys) {
		q := r.URL.Query()
		q.Set("$skiptoken", strconv.Itoa(end))
		page.NextLink = s.srv.URL + r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) serveOperation(w http.ResponseWriter, p path) {
	op := s.ops[p.opID]
	if op == nil {
		armError(w, http.StatusNotFound, "OperationNotFound", "operation "+p.opID+" not found")
		return
	}
	if p.opKind == "operationresults" { // Location polling
		switch {
		case !op.done:
			s.retryAfter(w)
			w.WriteHeader(http.StatusAccepted)
		case op.fail != fault.None:
			st, code, msg := operationError(op)
			armError(w, st, code, msg)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
		return
	}
	// The Azure-AsyncOperation status resource: InProgress, Succeeded,
	// Failed or Canceled, with the error of a failure
	// (https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations#azure-asyncoperation-request-and-response).
	body := map[string]any{"name": op.id, "status": "InProgress"}
	switch {
	case !op.done:
		s.retryAfter(w)
	case op.fail == fault.None:
		body["status"] = "Succeeded"
	default:
		_, code, msg := operationError(op)
		body["status"] = "Failed"
		if op.fail == fault.OpSuperseded {
			body["status"] = "Canceled"
		}
		body["error"] = map[string]string{"code": code, "message": msg}
	}
	writeJSON(w, http.StatusOK, body)
}

// operationError is how ARM reports an operation the fault core failed: the
// HTTP status of a Location poll, and the error code and message of both
// polls. Codes are those Microsoft.Network returns
// (https://learn.microsoft.com/azure/networking/check-usage-against-limits,
// https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-resource-quota,
// https://learn.microsoft.com/troubleshoot/azure/azure-kubernetes/create-upgrade-delete/error-code-anotheroperationinprogress).
func operationError(op *operation) (status int, code, message string) {
	switch op.fail {
	case fault.OpQuota:
		if eq(op.typ, "publicIPAddresses") {
			return http.StatusBadRequest, "PublicIPCountLimitReached", "Cannot create more than 1000 public IP addresses for this subscription in this region (injected)."
		}
		return http.StatusBadRequest, "QuotaExceeded", "Operation results in exceeding quota limits of " + canonicalType(op.typ) + " (injected)."
	case fault.OpConflict:
		return http.StatusConflict, "AnotherOperationInProgress", "Another operation on this or dependent resource is in progress (injected)."
	case fault.OpSuperseded:
		return http.StatusConflict, "CanceledAndSupersededDueToAnotherOperation", "Operation " + op.id + " was canceled and superseded by another operation (injected)."
	}
	return http.StatusInternalServerError, "InternalServerError", "An error occurred (injected)."
}

func (s *Server) retryAfter(w http.ResponseWriter) {
	ms := s.opts.OperationLatency.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	w.Header().Set("Retry-After-Ms", strconv.FormatInt(ms, 10))
}

// startOperation asks the fault core when the operation ends and whether it
// fails: finalize applies success, undo failure.
func (s *Server) startOperation(opName, typ string, finalize, undo func()) *operation {
	fop := s.inj.StartOperation(fault.Request{Service: "Microsoft.Network", Op: opName, Mutating: true})
	due := fop.Due
	if d := time.Now().Add(s.opts.OperationLatency); d.After(due) {
		due = d
	}
	op := &operation{id: newID(), doneAt: due, finalize: finalize, undo: undo, fail: fop.Fail, typ: typ}
	s.ops[op.id] = op
	return op
}

// advance completes due operations; s.mu is held.
func (s *Server) advance() {
	now := time.Now()
	for _, op := range s.ops {
		if !op.done && !now.Before(op.doneAt) {
			op.done = true
			if op.fail != fault.None {
				op.undo()
			} else {
				op.finalize()
			}
		}
	}
	// Forget operations completed long ago.
	if len(s.ops) > 4096 {
		for id, op := range s.ops {
			if op.done && now.Sub(op.doneAt) > time.Minute {
				delete(s.ops, id)
			}
		}
	}
}

func (s *Server) writeObject(w http.ResponseWriter, status int, o *object) {
	if o.kind == KindPublicIP {
		pip := o.value.(*armnetwork.PublicIPAddress)
		if user := s.publicIPUser(o.id); user != "" {
			pip.Properties.IPConfiguration = &armnetwork.IPConfiguration{ID: &user}
		} else {
			pip.Properties.IPConfiguration = nil
		}
	}
	w.Header().Set("ETag", o.etag)
	writeJSON(w, status, o.value)
}

// --- validation and server-side fields ---

type armErr struct {
	status        int
	code, message string
}

// firstErr returns the first non-nil error.
func firstErr(errs ...*armErr) *armErr {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func badRequest(code, format string, args ...any) *armErr {
	return &armErr{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func (s *Server) stampLoadBalancer(id, name string, lb *armnetwork.LoadBalancer, old *object) *armErr {
	lb.ID, lb.Name, lb.Type = &id, &name, ptr("Microsoft.Network/loadBalancers")
	if lb.Location == nil {
		return badRequest("LocationRequired", "The location property is required for this definition.")
	}
	if lb.Properties == nil {
		lb.Properties = &armnetwork.LoadBalancerPropertiesFormat{}
	}
	props := lb.Properties
	var prev map[string]*armnetwork.FrontendIPConfiguration
	if old != nil {
		prev = map[string]*armnetwork.FrontendIPConfiguration{}
		if op := old.value.(*armnetwork.LoadBalancer).Properties; op != nil {
			for _, fe := range op.FrontendIPConfigurations {
				prev[strings.ToLower(deref(fe.Name))] = fe
			}
		}
	}
	children := map[string]bool{}
	child := func(kind, n string) string {
		cid := id + "/" + kind + "/" + n
		children[strings.ToLower(cid)] = true
		return cid
	}
	privUsed := s.privateIPsInUse(id)
	// Addresses this load balancer's frontends already hold or ask for
	// statically are claimed before dynamic ones are handed out.
	for _, fe := range props.FrontendIPConfigurations {
		fp := fe.Properties
		if fp == nil || fp.Subnet == nil {
			continue
		}
		feID := strings.ToLower(id + "/frontendIPConfigurations/" + deref(fe.Name))
		var claim string
		switch {
		case deref(fp.PrivateIPAllocationMethod) == armnetwork.IPAllocationMethodStatic:
			claim = deref(fp.PrivateIPAddress)
		case prev[strings.ToLower(deref(fe.Name))] != nil && prev[strings.ToLower(deref(fe.Name))].Properties != nil:
			claim = deref(prev[strings.ToLower(deref(fe.Name))].Properties.PrivateIPAddress)
		}
		a, err := netip.ParseAddr(claim)
		if err != nil {
			continue
		}
		if user, ok := privUsed[a]; ok && !strings.EqualFold(user, feID) {
			return badRequest("PrivateIPAddressInUse", "IP configuration %s is using the private IP address %s which is already allocated to resource %s.", feID, a, user)
		}
		privUsed[a] = feID
	}
	for _, fe := range props.FrontendIPConfigurations {
		fe.ID, fe.Type, fe.Etag = ptr(child("frontendIPConfigurations", deref(fe.Name))), ptr("Microsoft.Network/loadBalancers/frontendIPConfigurations"), ptr(newETag())
		fp := fe.Properties
		if fp == nil || (fp.PublicIPAddress == nil) == (fp.Subnet == nil) {
			return badRequest("InvalidFrontendIPConfiguration", "frontend %s must reference exactly one of a public IP address or a subnet", deref(fe.Name))
		}
		if fp.PublicIPAddress != nil {
			pipID := strings.ToLower(deref(fp.PublicIPAddress.ID))
			if o := s.objs[pipID]; o == nil || o.kind != KindPublicIP {
				return badRequest("InvalidResourceReference", "Resource %s referenced by resource %s was not found.", deref(fp.PublicIPAddress.ID), deref(fe.ID))
			}
			if user := s.publicIPUser(pipID); user != "" && !strings.EqualFold(user, deref(fe.ID)) {
				return badRequest("PublicIPReferencedByMultipleIPConfigs", "Public IP address %s is referenced by multiple ipconfigs: %s and %s.", deref(fp.PublicIPAddress.ID), user, deref(fe.ID))
			}
			continue
		}
		if fp.PrivateIPAddress != nil && deref(fp.PrivateIPAllocationMethod) == armnetwork.IPAllocationMethodStatic {
			a, err := netip.ParseAddr(*fp.PrivateIPAddress)
			if err != nil || !s.opts.PrivateRange.Contains(a) {
				return badRequest("PrivateIPAddressNotInSubnet", "Private static IP address %s does not belong to the range of subnet %s.", *fp.PrivateIPAddress, deref(fp.Subnet.ID))
			}
			continue
		}
		fp.PrivateIPAllocationMethod = ptr(armnetwork.IPAllocationMethodDynamic)
		if p := prev[strings.ToLower(deref(fe.Name))]; p != nil && p.Properties != nil && p.Properties.PrivateIPAddress != nil && p.Properties.Subnet != nil {
			fp.PrivateIPAddress = p.Properties.PrivateIPAddress
			continue
		}
		a := s.allocPrivate(privUsed)
		fp.PrivateIPAddress = ptr(a.String())
		privUsed[a] = deref(fe.ID)
	}
	for _, bp := range props.BackendAddressPools {
		bp.ID, bp.Type, bp.Etag = ptr(child("backendAddressPools", deref(bp.Name))), ptr("Microsoft.Network/loadBalancers/backendAddressPools"), ptr(newETag())
	}
	for _, pr := range props.Probes {
		pr.ID, pr.Type, pr.Etag = ptr(child("probes", deref(pr.Name))), ptr("Microsoft.Network/loadBalancers/probes"), ptr(newETag())
		if pr.Properties == nil || pr.Properties.Port == nil || pr.Properties.Protocol == nil {
			return badRequest("InvalidProbe", "probe %s needs a port and a protocol", deref(pr.Name))
		}
		if *pr.Properties.Protocol != armnetwork.ProbeProtocolTCP && deref(pr.Properties.RequestPath) == "" {
			return badRequest("ProbeRequestPathRequired", "probe %s of protocol %s needs a request path", deref(pr.Name), *pr.Properties.Protocol)
		}
	}
	seen := map[string]string{}
	for _, rule := range props.LoadBalancingRules {
		rule.ID, rule.Type, rule.Etag = ptr(child("loadBalancingRules", deref(rule.Name))), ptr("Microsoft.Network/loadBalancers/loadBalancingRules"), ptr(newETag())
		rp := rule.Properties
		if rp == nil || rp.FrontendIPConfiguration == nil || rp.FrontendPort == nil || rp.Protocol == nil {
			return badRequest("InvalidLoadBalancingRule", "rule %s needs a frontend, a port and a protocol", deref(rule.Name))
		}
		refs := []*armnetwork.SubResource{rp.FrontendIPConfiguration, rp.BackendAddressPool, rp.Probe}
		for _, ref := range refs {
			if ref != nil && !children[strings.ToLower(deref(ref.ID))] {
				return badRequest("InvalidResourceReference", "Resource %s referenced by resource %s was not found.", deref(ref.ID), deref(rule.ID))
			}
		}
		k := strings.ToLower(deref(rp.FrontendIPConfiguration.ID)) + "/" + string(*rp.Protocol) + "/" + strconv.Itoa(int(*rp.FrontendPort))
		if other, dup := seen[k]; dup {
			return badRequest("LoadBalancingRulesWithSameFrontendIPAndPort", "Load balancing rules %s and %s use the same frontend IP configuration and port.", other, deref(rule.Name))
		}
		seen[k] = deref(rule.Name)
	}
	return nil
}

func (s *Server) privateIPsInUse(except string) map[netip.Addr]string {
	used := map[netip.Addr]string{}
	for _, o := range s.objs {
		lb, ok := o.value.(*armnetwork.LoadBalancer)
		if !ok || lb.Properties == nil || strings.EqualFold(o.id, except) {
			continue
		}
		for _, fe := range lb.Properties.FrontendIPConfigurations {
			if fe.Properties != nil && fe.Properties.PrivateIPAddress != nil {
				if a, err := netip.ParseAddr(*fe.Properties.PrivateIPAddress); err == nil {
					used[a] = deref(fe.ID)
				}
			}
		}
	}
	return used
}

func (s *Server) allocPrivate(used map[netip.Addr]string) netip.Addr {
	for a := s.nextPriv; s.opts.PrivateRange.Contains(a); a = a.Next() {
		if _, taken := used[a]; !taken {
			s.nextPriv = a.Next()
			return a
		}
	}
	s.nextPriv = s.opts.PrivateRange.Masked().Addr().Next().Next().Next().Next()
	return s.nextPriv
}

// publicIPUser returns the frontend ID that uses the public IP, or "".
func (s *Server) publicIPUser(pipID string) string {
	for _, o := range s.objs {
		lb, ok := o.value.(*armnetwork.LoadBalancer)
		if !ok || lb.Properties == nil {
			continue
		}
		for _, fe := range lb.Properties.FrontendIPConfigurations {
			if fe.Properties != nil && fe.Properties.PublicIPAddress != nil && strings.EqualFold(deref(fe.Properties.PublicIPAddress.ID), pipID) {
				return deref(fe.ID)
			}
		}
	}
	return ""
}

func (s *Server) validatePublicIP(pip *armnetwork.PublicIPAddress) *armErr {
	if pip.Location == nil {
		return badRequest("LocationRequired", "The location property is required for this definition.")
	}
	if pip.Properties != nil && pip.Properties.PublicIPPrefix != nil {
		if deref(pip.Properties.PublicIPPrefix.ID) == "" || !strings.Contains(strings.ToLower(*pip.Properties.PublicIPPrefix.ID), "/publicipprefixes/") {
			return badRequest("InvalidResourceReference", "public IP prefix %q is not a public IP prefix ID", deref(pip.Properties.PublicIPPrefix.ID))
		}
	}
	return nil
}

func (s *Server) stampPublicIP(id, name string, pip *armnetwork.PublicIPAddress) {
	pip.ID, pip.Name, pip.Type = &id, &name, ptr("Microsoft.Network/publicIPAddresses")
	if pip.Properties == nil {
		pip.Properties = &armnetwork.PublicIPAddressPropertiesFormat{}
	}
	if pip.Properties.IPAddress == nil {
		pip.Properties.IPAddress = ptr(s.nextPub.String())
		s.nextPub = s.nextPub.Next()
	}
	pip.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
	pip.Etag = ptr(newETag())
}

func (s *Server) validateSecurityRule(id string, rule *armnetwork.SecurityRule) *armErr {
	rp := rule.Properties
	if rp == nil || rp.Priority == nil || rp.Direction == nil || rp.Access == nil || rp.Protocol == nil {
		return badRequest("InvalidSecurityRule", "security rule %s needs priority, direction, access and protocol", id)
	}
	if *rp.Priority < 100 || *rp.Priority > 4096 {
		return badRequest("SecurityRuleInvalidPriority", "Security rule has invalid Priority %d. Value provided: %d Allowed range 100-4096.", *rp.Priority, *rp.Priority)
	}
	prefix := strings.ToLower(id[:strings.LastIndex(strings.ToLower(id), "/securityrules/")]) + "/securityrules/"
	for k, o := range s.objs {
		other, ok := o.value.(*armnetwork.SecurityRule)
		if !ok || !strings.HasPrefix(k, prefix) || k == strings.ToLower(id) || other.Properties == nil {
			continue
		}
		if deref(other.Properties.Priority) == *rp.Priority && deref(other.Properties.Direction) == *rp.Direction {
			return badRequest("SecurityRuleConflict", "Security rule %s conflicts with rule %s. Rules cannot have the same Priority and Direction.", id, o.id)
		}
	}
	return nil
}

// --- helpers ---

func resourceID(sub, rg, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/%s/%s", sub, rg, typ, name)
}

func armError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("x-ms-error-code", code)
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func setProvisioning(v any, state armnetwork.ProvisioningState) {
	switch x := v.(type) {
	case *armnetwork.LoadBalancer:
		x.Properties.ProvisioningState = &state
	case *armnetwork.PublicIPAddress:
		x.Properties.ProvisioningState = &state
	case *armnetwork.SecurityRule:
		x.Properties.ProvisioningState = &state
	case *armnetwork.SecurityGroup:
		if x.Properties == nil {
			x.Properties = &armnetwork.SecurityGroupPropertiesFormat{}
		}
		x.Properties.ProvisioningState = &state
	}
}

func setETag(v any, etag string) {
	switch x := v.(type) {
	case *armnetwork.LoadBalancer:
		x.Etag = &etag
	case *armnetwork.PublicIPAddress:
		x.Etag = &etag
	case *armnetwork.SecurityRule:
		x.Etag = &etag
	case *armnetwork.SecurityGroup:
		x.Etag = &etag
	}
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newETag() string { return `W/"` + newID() + `"` }

func clone(in, out any) {
	b, _ := json.Marshal(in)
	_ = json.Unmarshal(b, out)
}

func ptr[T any](v T) *T { return &v }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// cloneValue deep-copies a stored resource.
func cloneValue(v any) any {
	switch x := v.(type) {
	case *armnetwork.LoadBalancer:
		var out armnetwork.LoadBalancer
		clone(x, &out)
		return &out
	case *armnetwork.PublicIPAddress:
		var out armnetwork.PublicIPAddress
		clone(x, &out)
		return &out
	case *armnetwork.SecurityRule:
		var out armnetwork.SecurityRule
		clone(x, &out)
		return &out
	case *armnetwork.SecurityGroup:
		var out armnetwork.SecurityGroup
		clone(x, &out)
		return &out
	}
	return v
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func toPtrMap(m map[string]string) map[string]*string {
	if m == nil {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = ptr(v)
	}
	return out
}

func fromPtrMap(m map[string]*string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = deref(v)
	}
	return out
}
