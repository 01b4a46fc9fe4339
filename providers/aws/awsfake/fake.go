// Package awsfake is an in-process AWS endpoint for tests. It speaks the AWS
// Query protocol of Elastic Load Balancing v2 (API version 2015-12-01) and the
// EC2 Query protocol (2016-11-15) for exactly the operations Portico's AWS
// provider uses, so the real aws-sdk-go-v2 clients can be pointed at it with
// BaseEndpoint or AWS_ENDPOINT_URL and static test credentials.
//
// It keeps AWS semantics where they matter to a controller: ARNs and DNS
// names, idempotent creates and DuplicateLoadBalancerName /
// DuplicateTargetGroupName / DuplicateListener / InvalidGroup.Duplicate,
// ResourceInUse while a target group is referenced, DependencyViolation while
// a security group is still attached to a load balancer's network interfaces,
// eventually consistent list and name describes, Marker / NextToken
// pagination, and tag filters. It models time where it hides bugs: a new
// load balancer is "provisioning" before "active", a registered target is
// "initial" until its health checks pass (interval x healthy threshold,
// scaled by Options.Second) and then "healthy" only when the instance's
// security groups admit the load balancer.
//
// Faults come from the shared core in internal/fault (Faults): request
// faults by Kind, crash after n mutating calls, failed operations, the call
// log. The fake keeps only the wire mapping: Throttle is ELBv2 Throttling
// 400 or EC2 RequestLimitExceeded 503, ServerError InternalFailure /
// InternalError 500, Unavailable ServiceUnavailable / Unavailable 503, Slow
// a late 504, Crash InjectedCrash.
package awsfake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-lb/portico/internal/fault"
)

// API versions the fake answers; the SDK sends them in the Version field.
const (
	ELBv2Version = "2015-12-01"
	EC2Version   = "2016-11-15"
)

// Options configure a Fake.
type Options struct {
	// Region and AccountID go into ARNs and DNS names (defaults us-east-1,
	// 123456789012).
	Region    string
	AccountID string
	// Consistency is how long a newly created load balancer, target group or
	// security group stays invisible to list and name describes, how long a
	// security group stays in use after its load balancer is deleted, and how
	// long deregistered targets drain. Zero makes the fake strongly consistent.
	Consistency time.Duration
	// MaxPageSize caps every describe page (default 400 for ELBv2, 1000 for
	// EC2, the real maximums); small values exercise pagination.
	MaxPageSize int
	// Seed seeds random fault injection (SetThrottleRate, fault.Rule.Rate).
	Seed uint64
	// Clock replaces time.Now, for tests that move time by hand.
	Clock func() time.Time
	// Second is how long one AWS second lasts in the fake, for health
	// checks and provisioning (default 1ms: a target with a 10 s interval
	// and a healthy threshold of 2 turns healthy after 20ms). Negative makes
	// both immediate.
	Second time.Duration
	// RulesPerSecurityGroup caps inbound rules per security group (default
	// 60, the VPC default quota).
	RulesPerSecurityGroup int
	// TargetsPerZone caps targets per Availability Zone per load balancer
	// (default 500) and TargetsPerGroup targets per target group (default
	// 1000), the default NLB quotas.
	TargetsPerZone, TargetsPerGroup int
}

// provisioningSeconds is how long a new Network Load Balancer stays
// "provisioning" (in fake seconds, see Options.Second).
const provisioningSeconds = 30

// Call is one request the fake received.
type Call struct {
	Service  string // "elbv2" or "ec2"
	Action   string
	Mutating bool
	// Code is the error code returned, empty on success.
	Code string
	// AccessKeyID is the caller's key from the SigV4 Credential scope, and
	// Params the request's parameters: what CloudTrail records as
	// userIdentity.accessKeyId and requestParameters
	// (https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html,
	// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html).
	// Tests use them to tell which caller touched which resource.
	AccessKeyID string
	Params      url.Values
}

// accessKeyID reads the key from "AWS4-HMAC-SHA256 Credential=<key>/<scope>, ..."
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html#add-signature-to-request).
func accessKeyID(auth string) string {
	cred, _ := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 Credential=")
	key, _, _ := strings.Cut(cred, "/")
	return key
}

// Fake is the in-process endpoint. Create it with New and Close it after use.
type Fake struct {
	opts   Options
	server *httptest.Server

	mu        sync.Mutex
	now       func() time.Time
	lbs       map[string]*LoadBalancer // by ARN
	groups    map[string]*TargetGroup  // by ARN
	listeners map[string]*Listener     // by ARN
	subnets   map[string]*Subnet       // by ID
	sgs       map[string]*SecurityGroup
	instances map[string]*Instance
	eips      map[string]string // allocation ID -> public IP
	eipTags   map[string]map[string]string
	sgHeld    map[string]time.Time
	tgHeld    map[string]time.Time
	nodeSG    *SecurityGroup

	calls  []Call
	faults *fault.Injector
}

// Instance is an EC2 instance that can be a target: its zone counts toward
// the per-zone target quota and its security groups decide whether health
// checks reach it (none recorded: they always do).
type Instance struct {
	ID, Zone       string
	SecurityGroups []string
}

// New starts a fake endpoint.
func New(opts Options) *Fake {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if opts.Second == 0 {
		opts.Second = time.Millisecond
	}
	if opts.RulesPerSecurityGroup == 0 {
		opts.RulesPerSecurityGroup = 60
	}
	if opts.TargetsPerZone == 0 {
		opts.TargetsPerZone = 500
	}
	if opts.TargetsPerGroup == 0 {
		opts.TargetsPerGroup = 1000
	}
	now := opts.Clock
	if now == nil {
		now = time.Now
	}
	faults := fault.New(opts.Seed)
	faults.SetClock(now)
	f := &Fake{
		opts:      opts,
		now:       now,
		lbs:       map[string]*LoadBalancer{},
		groups:    map[string]*TargetGroup{},
		listeners: map[string]*Listener{},
		subnets:   map[string]*Subnet{},
		sgs:       map[string]*SecurityGroup{},
		instances: map[string]*Instance{},
		eips:      map[string]string{},
		eipTags:   map[string]map[string]string{},
		sgHeld:    map[string]time.Time{},
		tgHeld:    map[string]time.Time{},
		faults:    faults,
	}
	f.server = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

// URL is the endpoint to give the SDK (BaseEndpoint or AWS_ENDPOINT_URL).
func (f *Fake) URL() string { return f.server.URL }

// Region is the region in the fake's ARNs.
func (f *Fake) Region() string { return f.opts.Region }

// Close stops the server.
func (f *Fake) Close() { f.server.Close() }

// ---- seeding ----

// AddSubnet adds a subnet with tags.
func (f *Fake) AddSubnet(id, vpcID, zone string, tags map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subnets[id] = &Subnet{ID: id, VPCID: vpcID, Zone: zone, Tags: cloneTags(tags)}
}

// AddInstance makes an instance ID valid as a target.
func (f *Fake) AddInstance(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.instances[id] == nil {
		f.instances[id] = &Instance{ID: id}
	}
}

// PutInstance adds or replaces an instance with its zone and security groups.
func (f *Fake) PutInstance(in Instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in.SecurityGroups = append([]string(nil), in.SecurityGroups...)
	f.instances[in.ID] = &in
}

// AddElasticIP adds an Elastic IP allocation with tags (none when omitted).
func (f *Fake) AddElasticIP(allocationID, publicIP string, tags ...map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.eips[allocationID] = publicIP
	if len(tags) > 0 {
		f.eipTags[allocationID] = cloneTags(tags[0])
	}
}

// ---- fault injection ----

// Faults is the fake's fault and operations core: add request rules, crash
// after n mutating calls, fail asynchronous operations (a new load balancer
// ends "failed"), read the shared call log and counters.
func (f *Fake) Faults() *fault.Injector { return f.faults }

// InjectThrottle makes the next n requests fail with the service's
// throttling error (ELBv2 Throttling 400, EC2 RequestLimitExceeded 503).
func (f *Fake) InjectThrottle(n int) { f.faults.Add(fault.Rule{Kind: fault.Throttle, Times: n}) }

// InjectServerError makes the next n requests fail with a 500.
func (f *Fake) InjectServerError(n int) { f.faults.Add(fault.Rule{Kind: fault.ServerError, Times: n}) }

// InjectSlow delays the next n responses by d, so clients with a shorter
// timeout see a timeout; the request is not applied.
func (f *Fake) InjectSlow(n int, d time.Duration) {
	f.faults.Add(fault.Rule{Kind: fault.Slow, Times: n, Delay: d})
}

// SetThrottleRate throttles each request with probability p.
func (f *Fake) SetThrottleRate(p float64) { f.faults.Add(fault.Rule{Kind: fault.Throttle, Rate: p}) }

// CrashAfter lets n more mutating requests succeed and fails every later
// request until Recover, as if the caller died between two steps.
func (f *Fake) CrashAfter(n int) { f.faults.CrashAfter(n) }

// Recover clears every injected request fault and ends a crash.
func (f *Fake) Recover() { f.faults.Recover() }

// ---- inspection ----

// Calls returns every request received so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// MutatingCalls counts mutating requests received so far, failed ones too.
func (f *Fake) MutatingCalls() int { return f.faults.MutatingCalls() }

// Resource is one object in the fake, for assertions.
type Resource struct {
	Kind string // loadBalancer, targetGroup, listener, securityGroup
	ID   string
	Tags map[string]string
}

// Resources lists every load balancer, target group, listener and security
// group, sorted by kind and ID.
func (f *Fake) Resources() []Resource {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Resource
	for _, lb := range f.lbs {
		out = append(out, Resource{Kind: "loadBalancer", ID: lb.ARN, Tags: cloneTags(lb.Tags)})
	}
	for _, tg := range f.groups {
		out = append(out, Resource{Kind: "targetGroup", ID: tg.ARN, Tags: cloneTags(tg.Tags)})
	}
	for _, l := range f.listeners {
		out = append(out, Resource{Kind: "listener", ID: l.ARN, Tags: cloneTags(l.Tags)})
	}
	for _, sg := range f.sgs {
		if sg != f.nodeSG {
			out = append(out, Resource{Kind: "securityGroup", ID: sg.ID, Tags: cloneTags(sg.Tags)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].ID < out[j].Kind+out[j].ID })
	return out
}

// LoadBalancerByName returns a copy of the named load balancer.
func (f *Fake) LoadBalancerByName(name string) (LoadBalancer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, lb := range f.lbs {
		if lb.Name == name {
			return *lb, true
		}
	}
	return LoadBalancer{}, false
}

// TargetGroups returns copies of every target group, sorted by name.
func (f *Fake) TargetGroups() []TargetGroup {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []TargetGroup
	for _, tg := range f.groups {
		c := *tg
		c.Targets = append([]Target(nil), tg.Targets...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Listeners returns copies of every listener, sorted by port.
func (f *Fake) Listeners() []Listener {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Listener
	for _, l := range f.listeners {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Port < out[j].Port || out[i].Port == out[j].Port && out[i].ARN < out[j].ARN
	})
	return out
}

// SecurityGroups returns copies of every security group but the seeded
// node security group (NodeSecurityGroup, SecurityGroup), sorted by ID.
func (f *Fake) SecurityGroups() []SecurityGroup {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []SecurityGroup
	for _, sg := range f.sgs {
		if sg == f.nodeSG {
			continue
		}
		c := *sg
		c.Ingress = append([]Rule(nil), sg.Ingress...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SecurityGroup returns a copy of the security group id.
func (f *Fake) SecurityGroup(id string) (SecurityGroup, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sg := f.sgs[id]
	if sg == nil {
		return SecurityGroup{}, false
	}
	c := *sg
	c.Ingress = append([]Rule(nil), sg.Ingress...)
	return c, true
}

// PlantLoadBalancer creates a load balancer that another tool owns.
func (f *Fake) PlantLoadBalancer(name string, tags map[string]string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	lb := f.newLoadBalancer(name, "internet-facing", "ipv4", "vpc-foreign", tags)
	lb.Created = time.Time{}
	return lb.ARN
}

// PlantLoadBalancerWithSecurityGroups creates a load balancer with tags and
// security groups, as another tool (or an earlier Portico) made it.
func (f *Fake) PlantLoadBalancerWithSecurityGroups(name string, tags map[string]string, sgs ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	lb := f.newLoadBalancer(name, "internet-facing", "ipv4", "vpc-foreign", tags)
	lb.SecurityGroups = append([]string(nil), sgs...)
	lb.Created = time.Time{}
	return lb.ARN
}

// PlantSecurityGroup creates a security group that another tool owns.
func (f *Fake) PlantSecurityGroup(name, vpcID string, tags map[string]string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	sg := &SecurityGroup{ID: "sg-" + randHex(17), Name: name, VPCID: vpcID, Description: "planted", Tags: cloneTags(tags)}
	f.sgs[sg.ID] = sg
	return sg.ID
}

// ---- HTTP plumbing ----

type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, code, format, args...)
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "the AWS Query protocol uses POST", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form := r.PostForm
	action, version := form.Get("Action"), form.Get("Version")
	service := ""
	switch version {
	case ELBv2Version:
		service = "elbv2"
	case EC2Version:
		service = "ec2"
	default:
		http.Error(w, "unknown API version "+version, http.StatusBadRequest)
		return
	}
	reqID := randUUID()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=") {
		f.record(Call{Service: service, Action: action, Code: "MissingAuthenticationToken"}, fault.Request{Service: service, Op: action}, "MissingAuthenticationToken")
		writeError(w, service, reqID, errf(http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"))
		return
	}
	mutating := isMutating(action)
	call := Call{Service: service, Action: action, Mutating: mutating, AccessKeyID: accessKeyID(r.Header.Get("Authorization")), Params: form}
	req := fault.Request{Service: service, Op: action, Mutating: mutating, Caller: call.AccessKeyID}

	d := f.faults.Decide(req)
	if d.Kind == fault.Slow {
		select {
		case <-time.After(d.Delay):
		case <-r.Context().Done():
		}
	}
	if aerr := faultError(service, d.Kind); aerr != nil {
		call.Code = aerr.code
		f.record(call, req, string(d.Kind))
		writeError(w, service, reqID, aerr)
		return
	}

	f.mu.Lock()
	var result any
	var aerr *apiError
	if service == "elbv2" {
		result, aerr = f.elbv2(action, form)
	} else {
		result, aerr = f.ec2(action, form)
	}
	f.mu.Unlock()
	if aerr != nil {
		call.Code = aerr.code
	}
	f.record(call, req, call.Code)
	if aerr != nil {
		writeError(w, service, reqID, aerr)
		return
	}
	writeResult(w, service, action, reqID, result)
}

// record logs a call in the fake's wire-level log and the shared call log.
func (f *Fake) record(c Call, req fault.Request, outcome string) {
	f.faults.Record(req, outcome)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// faultError maps a fault Kind to the error the service answers with
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/CommonErrors.html,
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
func faultError(service string, k fault.Kind) *apiError {
	switch k {
	case fault.None:
		return nil
	case fault.Throttle:
		return throttle(service)
	case fault.ServerError:
		if service == "ec2" {
			return errf(http.StatusInternalServerError, "InternalError", "An internal error has occurred")
		}
		return errf(http.StatusInternalServerError, "InternalFailure", "The request processing has failed because of an unknown error")
	case fault.Unavailable:
		if service == "ec2" {
			return errf(http.StatusServiceUnavailable, "Unavailable", "The server is overloaded and can't handle the request")
		}
		return errf(http.StatusServiceUnavailable, "ServiceUnavailable", "The request has failed due to a temporary failure of the server")
	case fault.Slow:
		return errf(http.StatusGatewayTimeout, "RequestTimeout", "injected slow response")
	}
	return badRequest("InjectedCrash", "the caller crashed (injected)")
}

func throttle(service string) *apiError {
	if service == "ec2" {
		return errf(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
	}
	return badRequest("Throttling", "Rate exceeded")
}

func writeError(w http.ResponseWriter, service, reqID string, e *apiError) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	if service == "ec2" {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
			esc(e.code), esc(e.message), reqID)
		return
	}
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		typ, esc(e.code), esc(e.message), reqID)
}

// writeResult wraps result in the protocol's envelope: for ELBv2
// <ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>, for EC2
// <ActionResponse><requestId/>...</ActionResponse>.
func writeResult(w http.ResponseWriter, service, action, reqID string, result any) {
	body, err := xml.Marshal(result)
	if err != nil {
		writeError(w, service, reqID, errf(http.StatusInternalServerError, "InternalFailure", "fake: %v", err))
		return
	}
	// The result struct marshals as <result>...</result>; keep its children.
	inner := strings.TrimSuffix(strings.TrimPrefix(string(body), "<result>"), "</result>")
	if inner == "<result/>" {
		inner = ""
	}
	w.Header().Set("Content-Type", "text/xml")
	if service == "ec2" {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>%s</requestId>%s</%sResponse>`,
			action, reqID, inner, action)
		return
	}
	fmt.Fprintf(w, `<%sResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		action, action, inner, action, reqID, action)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ---- query-protocol input helpers ----

// members returns the prefixes of list elements under prefix in order,
// accepting both the awsquery form (prefix.member.N) and the ec2query form
// (prefix.N).
func members(form url.Values, prefix string) []string {
	var out []string
	for _, sep := range []string{".member.", "."} {
		for i := 1; ; i++ {
			p := prefix + sep + strconv.Itoa(i)
			if !hasPrefix(form, p) {
				break
			}
			out = append(out, p)
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

func hasPrefix(form url.Values, p string) bool {
	if _, ok := form[p]; ok {
		return true
	}
	for k := range form {
		if strings.HasPrefix(k, p+".") {
			return true
		}
	}
	return false
}

func stringList(form url.Values, prefix string) []string {
	var out []string
	for _, m := range members(form, prefix) {
		out = append(out, form.Get(m))
	}
	return out
}

func tagList(form url.Values, prefix string) map[string]string {
	tags := map[string]string{}
	for _, m := range members(form, prefix) {
		tags[form.Get(m+".Key")] = form.Get(m + ".Value")
	}
	return tags
}

func intParam(form url.Values, key string, def int) (int, *apiError) {
	v := form.Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		return 0, badRequest("ValidationError", "%s must be an integer", key)
	}
	return n, nil
}

// page returns the slice of items for a Marker / NextToken and the token of
// the next page.
func page[T any](items []T, token string, size int) ([]T, string, *apiError) {
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", badRequest("ValidationError", "invalid pagination token")
		}
		start = n
	}
	end := min(start+size, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

func (f *Fake) pageSize(requested, max int) int {
	size := max
	if requested > 0 && requested < size {
		size = requested
	}
	if f.opts.MaxPageSize > 0 && f.opts.MaxPageSize < size {
		size = f.opts.MaxPageSize
	}
	return size
}

// visible reports whether an object created at t shows in list describes.
func (f *Fake) visible(created time.Time) bool {
	return f.now().Sub(created) >= f.opts.Consistency
}

func cloneTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sameTags(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func randUUID() string {
	h := randHex(32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// WaitSettled sleeps until everything created so far is visible.
func (f *Fake) WaitSettled(ctx context.Context) {
	if f.opts.Consistency <= 0 {
		return
	}
	select {
	case <-time.After(f.opts.Consistency):
	case <-ctx.Done():
	}
}

func isMutating(action string) bool {
	return strings.HasPrefix(action, "Create") || strings.HasPrefix(action, "Delete") ||
		strings.HasPrefix(action, "Modify") || strings.HasPrefix(action, "Register") ||
		strings.HasPrefix(action, "Deregister") || strings.HasPrefix(action, "Authorize") ||
		strings.HasPrefix(action, "Revoke") || strings.HasPrefix(action, "Set") ||
		strings.HasPrefix(action, "Add") || strings.HasPrefix(action, "Remove")
}
