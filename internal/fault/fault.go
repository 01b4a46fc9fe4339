// Package fault is the one fault and operations core of Portico's fake clouds
// and of the memory backend: which calls fail and how, when an asynchronous
// operation finishes and whether it fails, and the log of every call.
//
// A fake keeps only its wire protocol: it asks the Injector what happens to a
// request (Decide) and to an operation it starts (StartOperation), and maps
// the answer's Kind to the error shape its real API returns (AWS Throttling
// 400, GCP 403 rateLimitExceeded, Azure 429 with Retry-After, ...). Tests
// speak one vocabulary to every fake:
//
//	inj.Add(fault.Rule{Kind: fault.Throttle, Times: 3})
//	inj.Add(fault.Rule{Kind: fault.ServerError, Rate: 0.3})
//	inj.CrashAfter(5)
//	inj.FailOperations(fault.OpRule{Kind: fault.OpQuota, Times: 1})
package fault

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Kind names a fault. Request faults happen before the request is applied;
// operation faults end an accepted asynchronous operation.
type Kind string

const (
	// None: the request goes through.
	None Kind = ""
	// Throttle: the request is refused by the API's rate limit.
	Throttle Kind = "Throttle"
	// ServerError: the API answers 500 without applying the request.
	ServerError Kind = "ServerError"
	// Unavailable: the API answers 503 without applying the request.
	Unavailable Kind = "Unavailable"
	// Slow: the answer comes after Rule.Delay, too late for a caller with a
	// shorter deadline; the request is not applied.
	Slow Kind = "Slow"
	// Crash: the caller died. Once CrashAfter's budget of mutating calls is
	// spent, every request fails until Recover.
	Crash Kind = "Crash"

	// OpQuota: the operation fails because a quota is exhausted.
	OpQuota Kind = "OperationQuota"
	// OpConflict: another change to the same resource won (a concurrent
	// update, a resource still in use).
	OpConflict Kind = "OperationConflict"
	// OpInternal: the operation fails inside the cloud; retrying helps.
	OpInternal Kind = "OperationInternal"
	// OpSuperseded: a later request for the same resource cancelled it.
	OpSuperseded Kind = "OperationSuperseded"
)

// Request is what a fake knows about a call before it handles it.
type Request struct {
	// Service is the API ("elbv2", "ec2", "compute", "network", ...).
	Service string
	// Op is the operation ("CreateLoadBalancer", "POST forwardingRules").
	Op string
	// Mutating is true for calls that change state.
	Mutating bool
	// Caller tells clients apart (access key, token, user agent).
	Caller string
}

// Rule makes matching requests fail.
type Rule struct {
	Kind Kind
	// Times is how many requests fail; a negative value fails every
	// matching request until Recover. Zero means Times is unlimited only
	// when Rate is set.
	Times int
	// Rate, in (0,1], fails each matching request with that probability.
	Rate float64
	// MutatingOnly limits the rule to mutating requests.
	MutatingOnly bool
	// Op, when set, limits the rule to requests with that Op.
	Op string
	// Delay is how long a Slow answer takes.
	Delay time.Duration
}

// Decision is what happens to a request.
type Decision struct {
	Kind  Kind
	Delay time.Duration
}

// OpRule makes asynchronous operations fail.
type OpRule struct {
	Kind  Kind
	Times int     // as Rule.Times
	Rate  float64 // as Rule.Rate
	Op    string  // as Rule.Op
}

// Operation is the fate of an accepted asynchronous operation.
type Operation struct {
	// Due is when it finishes.
	Due time.Time
	// Fail is the Kind it ends with; None for success.
	Fail Kind
}

// Call is one recorded request and its outcome.
type Call struct {
	Request
	// Outcome is the fault injected, or the error code the fake itself
	// answered ("" for success).
	Outcome string
}

// Stats counts what the Injector saw and did.
type Stats struct {
	Calls    int
	Mutating int
	// Injected counts request faults by kind.
	Injected map[Kind]int
	// OperationsFailed counts operations ended with an injected failure.
	OperationsFailed int
}

// Injector decides faults. The zero value is not usable; call New.
type Injector struct {
	mu         sync.Mutex
	rng        *rand.Rand
	now        func() time.Time
	rules      []*Rule
	opRules    []*OpRule
	opDelay    time.Duration
	crashAfter int // mutating calls left before a crash; < 0 disabled
	crashed    bool
	calls      []Call
	// callLog is how many recent calls the log keeps; < 0 every call.
	callLog int
	stats   Stats
}

// New returns an Injector whose random choices follow seed.
func New(seed uint64) *Injector {
	return &Injector{
		rng:        rand.New(rand.NewPCG(seed, seed^0x5eed)),
		now:        time.Now,
		crashAfter: -1,
		callLog:    -1,
		stats:      Stats{Injected: map[Kind]int{}},
	}
}

// SetClock replaces time.Now for operation deadlines.
func (i *Injector) SetClock(now func() time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.now = now
}

// Add installs a request rule. Rules are tried in the order added.
func (i *Injector) Add(r Rule) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rules = append(i.rules, &r)
}

// CrashAfter lets n more mutating requests through, then fails every request
// with Crash until Recover, as if the caller died between two steps.
func (i *Injector) CrashAfter(n int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.crashAfter, i.crashed = n, false
}

// Crashed reports whether an injected crash is in effect.
func (i *Injector) Crashed() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.crashed
}

// Recover removes every rule and ends a crash. Operation rules and the
// operation delay stay; ClearOperations removes them.
func (i *Injector) Recover() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rules = nil
	i.crashAfter, i.crashed = -1, false
}

// Decide says what happens to req. It does not record the call: the fake
// calls Record once it knows the outcome.
func (i *Injector) Decide(req Request) Decision {
	i.mu.Lock()
	defer i.mu.Unlock()
	switch {
	case i.crashed:
		i.stats.Injected[Crash]++
		return Decision{Kind: Crash}
	case req.Mutating && i.crashAfter == 0:
		i.crashed = true
		i.stats.Injected[Crash]++
		return Decision{Kind: Crash}
	}
	for _, r := range i.rules {
		if !matches(r.Times, r.Rate, r.Op, req.Op) || (r.MutatingOnly && !req.Mutating) {
			continue
		}
		if r.Rate > 0 && r.Rate < 1 && i.rng.Float64() >= r.Rate {
			continue
		}
		if r.Times > 0 {
			r.Times--
		}
		i.stats.Injected[r.Kind]++
		return Decision{Kind: r.Kind, Delay: r.Delay}
	}
	if req.Mutating && i.crashAfter > 0 {
		i.crashAfter--
	}
	return Decision{}
}

// matches reports whether a rule with times, rate and op applies to op.
func matches(times int, rate float64, ruleOp, op string) bool {
	if times == 0 && rate == 0 {
		return false
	}
	return ruleOp == "" || ruleOp == op
}

// SetCallLog keeps only the n most recent calls in the log (Calls); n < 0,
// the default, keeps every call. The statistics count every call either way.
// A long-running process sets it: an unbounded log grows with every call.
func (i *Injector) SetCallLog(n int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.callLog = n
	i.calls = trimLog(i.calls, n)
}

// trimLog drops all but the n most recent entries of log once it holds 2n,
// so that appending stays amortized O(1) and the log at most 2n long.
func trimLog[T any](log []T, n int) []T {
	if n < 0 || len(log) < 2*n || len(log) == 0 {
		return log
	}
	return append(make([]T, 0, 2*n), log[len(log)-n:]...)
}

// Record logs a call and its outcome.
func (i *Injector) Record(req Request, outcome string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.calls = trimLog(append(i.calls, Call{Request: req, Outcome: outcome}), i.callLog)
	i.stats.Calls++
	if req.Mutating {
		i.stats.Mutating++
	}
}

// Calls returns every recorded call, or the most recent ones under
// SetCallLog.
func (i *Injector) Calls() []Call {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.callLog >= 0 && len(i.calls) > i.callLog {
		return append([]Call(nil), i.calls[len(i.calls)-i.callLog:]...)
	}
	return append([]Call(nil), i.calls...)
}

// MutatingCalls counts recorded mutating calls, failed ones included.
func (i *Injector) MutatingCalls() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stats.Mutating
}

// Stats returns a copy of the counters.
func (i *Injector) Stats() Stats {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.stats
	s.Injected = make(map[Kind]int, len(i.stats.Injected))
	for k, v := range i.stats.Injected {
		s.Injected[k] = v
	}
	return s
}

// SetOperationDelay sets how long operations started from now on run.
func (i *Injector) SetOperationDelay(d time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.opDelay = d
}

// FailOperations installs an operation rule.
func (i *Injector) FailOperations(r OpRule) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.opRules = append(i.opRules, &r)
}

// ClearOperations removes operation rules and the operation delay.
func (i *Injector) ClearOperations() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.opRules, i.opDelay = nil, 0
}

// StartOperation decides when an operation the fake accepted for req
// finishes and whether it fails.
func (i *Injector) StartOperation(req Request) Operation {
	i.mu.Lock()
	defer i.mu.Unlock()
	op := Operation{Due: i.now().Add(i.opDelay)}
	for _, r := range i.opRules {
		if !matches(r.Times, r.Rate, r.Op, req.Op) {
			continue
		}
		if r.Rate > 0 && r.Rate < 1 && i.rng.Float64() >= r.Rate {
			continue
		}
		if r.Times > 0 {
			r.Times--
		}
		i.stats.OperationsFailed++
		op.Fail = r.Kind
		break
	}
	return op
}
