package fault

import (
	"testing"
	"time"
)

var (
	read  = Request{Service: "s", Op: "Describe"}
	write = Request{Service: "s", Op: "Create", Mutating: true}
)

func TestRulesCountDown(t *testing.T) {
	i := New(1)
	i.Add(Rule{Kind: Throttle, Times: 2})
	i.Add(Rule{Kind: ServerError, Times: 1, Op: "Create"})
	got := []Kind{i.Decide(read).Kind, i.Decide(write).Kind, i.Decide(read).Kind, i.Decide(write).Kind, i.Decide(write).Kind}
	want := []Kind{Throttle, Throttle, None, ServerError, None}
	for n := range want {
		if got[n] != want[n] {
			t.Fatalf("decisions %v, want %v", got, want)
		}
	}
	if s := i.Stats(); s.Injected[Throttle] != 2 || s.Injected[ServerError] != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestMutatingOnlyAndUntilRecover(t *testing.T) {
	i := New(1)
	i.Add(Rule{Kind: Unavailable, Times: -1, MutatingOnly: true})
	for range 5 {
		if d := i.Decide(read); d.Kind != None {
			t.Fatalf("read got %v", d.Kind)
		}
		if d := i.Decide(write); d.Kind != Unavailable {
			t.Fatalf("write got %v", d.Kind)
		}
	}
	i.Recover()
	if d := i.Decide(write); d.Kind != None {
		t.Fatalf("after Recover got %v", d.Kind)
	}
}

func TestRateIsSeededAndApproximate(t *testing.T) {
	count := func(seed uint64) int {
		i := New(seed)
		i.Add(Rule{Kind: Throttle, Rate: 0.3})
		n := 0
		for range 10000 {
			if i.Decide(read).Kind == Throttle {
				n++
			}
		}
		return n
	}
	a, b := count(7), count(7)
	if a != b {
		t.Errorf("same seed gave %d and %d", a, b)
	}
	if a < 2700 || a > 3300 {
		t.Errorf("rate 0.3 throttled %d of 10000", a)
	}
}

func TestCrashAfter(t *testing.T) {
	i := New(1)
	i.CrashAfter(2)
	for n, req := range []Request{write, read, write} {
		if d := i.Decide(req); d.Kind != None {
			t.Fatalf("call %d got %v before the budget was spent", n, d.Kind)
		}
	}
	if d := i.Decide(write); d.Kind != Crash {
		t.Fatalf("third write got %v, want Crash", d.Kind)
	}
	if d := i.Decide(read); d.Kind != Crash || !i.Crashed() {
		t.Fatalf("read after crash got %v", d.Kind)
	}
	i.Recover()
	if d := i.Decide(write); d.Kind != None || i.Crashed() {
		t.Fatalf("after Recover got %v", d.Kind)
	}
}

func TestOperations(t *testing.T) {
	i := New(1)
	now := time.Unix(1000, 0)
	i.SetClock(func() time.Time { return now })
	i.SetOperationDelay(3 * time.Second)
	i.FailOperations(OpRule{Kind: OpQuota, Times: 1, Op: "Create"})
	if op := i.StartOperation(read); op.Fail != None || !op.Due.Equal(now.Add(3*time.Second)) {
		t.Fatalf("other op %+v", op)
	}
	if op := i.StartOperation(write); op.Fail != OpQuota {
		t.Fatalf("first create %+v, want quota failure", op)
	}
	if op := i.StartOperation(write); op.Fail != None {
		t.Fatalf("second create %+v", op)
	}
	if s := i.Stats(); s.OperationsFailed != 1 {
		t.Errorf("stats %+v", s)
	}
	i.ClearOperations()
	if op := i.StartOperation(write); !op.Due.Equal(now) {
		t.Errorf("delay not cleared: %+v", op)
	}
}

func TestRecordLog(t *testing.T) {
	i := New(1)
	i.Record(read, "")
	i.Record(write, "Throttle")
	if c := i.Calls(); len(c) != 2 || c[1].Outcome != "Throttle" || !c[1].Mutating {
		t.Fatalf("calls %+v", c)
	}
	if i.MutatingCalls() != 1 {
		t.Errorf("mutating %d", i.MutatingCalls())
	}
}

// TestCallLogLimit: with a limit the Injector keeps only the most recent
// calls (a long-running process, such as the operator with the memory
// backend, otherwise keeps every call forever), while the statistics still
// count every call.
func TestCallLogLimit(t *testing.T) {
	i := New(1)
	i.SetCallLog(10)
	for n := range 1000 {
		r := read
		r.Op = string(rune('a' + n%26))
		i.Record(r, "")
	}
	calls := i.Calls()
	if len(calls) != 10 || calls[9].Op != string(rune('a'+999%26)) || calls[0].Op != string(rune('a'+990%26)) {
		t.Errorf("kept %d calls (%v), want the last 10", len(calls), calls)
	}
	if cap(i.calls) > 20 {
		t.Errorf("the log holds room for %d calls, want at most 20", cap(i.calls))
	}
	if s := i.Stats(); s.Calls != 1000 {
		t.Errorf("stats counted %d calls, want 1000", s.Calls)
	}
}
