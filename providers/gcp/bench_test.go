package gcp_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
)

// TestBenchGCP is `make bench-gcp`: 100 Services on 6 nodes in two zones are
// created while 30% of all API calls are throttled (403 rateLimitExceeded,
// 429, 503), resynced unchanged, and resynced after a node joins. It writes
// the summary line to $PORTICO_GCP_BENCH_OUT:
//
//	gcp: create_calls=<mutating calls to create one Service in a cluster whose instance groups exist>
//	     resync_mutating=<mutating calls when all 100 are ensured again unchanged>
//	     node_change_calls=<mutating calls for all 100 after a node joins>
//	     throttled_failures=<Ensure calls that returned an error under throttling>
//	     op_failures_survived=<operations that ended DONE with an error (INTERNAL_ERROR,
//	                           RESOURCE_NOT_READY, RESOURCE_IN_USE_BY_ANOTHER_RESOURCE) and were retried>
//
// Besides the 30% of calls refused, 5% of the operations the fake accepts
// fail (as Compute Engine reports failures: DONE with error.errors[]).
func TestBenchGCP(t *testing.T) {
	out := os.Getenv("PORTICO_GCP_BENCH_OUT")
	if out == "" {
		t.Skip("set PORTICO_GCP_BENCH_OUT (make bench-gcp) to run the benchmark")
	}
	const services = 100
	e := newEnv(t, envOptions{fake: gcpfake.Options{Seed: 42}})
	// The production retry budget (8 attempts), with shorter delays so the
	// benchmark runs in seconds.
	p, err := gcp.New(e.api, gcp.Options{ClusterID: testCluster, Project: testProject, Region: testRegion, Network: "default",
		ExternalInstanceGroupsPrefix: gcp.DefaultExternalInstanceGroupsPrefix,
		Backoff:                      gcp.Backoff{Attempts: 8, Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{"node-a", "node-b", "node-c", "node-d", "node-e", "node-f"}
	svc := func(i int) providers.Key { return key(fmt.Sprintf("bench-%03d", i)) }
	desiredFor := func(i int, nodes []string) *providers.LoadBalancer {
		ps := ports(80, 443)
		if i%4 == 0 {
			ps = append(ps, providers.Port{Name: "dns", Protocol: providers.UDP, Port: 53})
		}
		return desired(svc(i), nodes, ps)
	}

	// 30% of calls fail: 10% each of 403 rateLimitExceeded, 429 and 503.
	e.fake.Inject(gcpfake.Fault{Code: 403, Reason: "rateLimitExceeded", Times: -1, Rate: 0.1})
	e.fake.Inject(gcpfake.Fault{Code: 429, Reason: "rateLimitExceeded", Times: -1, Rate: 0.1 / 0.9})
	e.fake.Inject(gcpfake.Fault{Code: 503, Reason: "backendError", Times: -1, Rate: 0.1 / 0.8})
	// 5% of accepted operations fail: 2% internal errors, 2% not ready,
	// 1% in use.
	e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpInternal, Times: -1, Rate: 0.02})
	e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpSuperseded, Times: -1, Rate: 0.02 / 0.98})
	e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpConflict, Times: -1, Rate: 0.01 / 0.96})
	start := time.Now()
	throttledFailures := 0
	for i := range services {
		converged := false
		for range 10 {
			if _, err := p.Ensure(t.Context(), desiredFor(i, nodes)); err != nil {
				throttledFailures++
				t.Logf("service %d: %v", i, err)
				continue
			}
			converged = true
			break
		}
		if !converged {
			t.Errorf("service %d never converged under throttling", i)
		}
	}
	injected := 0
	for _, c := range e.fake.Calls() {
		if c.Code == 403 || c.Code == 429 || c.Code == 503 {
			injected++
		}
	}
	t.Logf("created %d Services in %s with %d of %d calls throttled", services, time.Since(start).Round(time.Millisecond), injected, len(e.fake.Calls()))
	opFailures := e.fake.Faults().Stats().OperationsFailed
	if opFailures == 0 {
		t.Error("no operation failed; the injection did not fire")
	}
	e.fake.ClearFaults()
	e.fake.Faults().ClearOperations()

	before := e.fake.MutatingCalls()
	for i := range services {
		if _, err := p.Ensure(t.Context(), desiredFor(i, nodes)); err != nil {
			t.Fatalf("resync %d: %v", i, err)
		}
	}
	resync := e.fake.MutatingCalls() - before
	if resync != 0 {
		t.Errorf("an unchanged resync made %d mutating calls", resync)
	}

	before = e.fake.MutatingCalls()
	grown := append(nodes, "node-g")
	for i := range services {
		st, err := p.Ensure(t.Context(), desiredFor(i, grown))
		if err != nil {
			t.Fatalf("node change %d: %v", i, err)
		}
		if st.Backends.Total != len(grown) {
			t.Fatalf("service %d has %d backends, want %d", i, st.Backends.Total, len(grown))
		}
	}
	nodeChange := e.fake.MutatingCalls() - before

	before = e.fake.MutatingCalls()
	if _, err := p.Ensure(t.Context(), desiredFor(services, grown)); err != nil {
		t.Fatal(err)
	}
	create := e.fake.MutatingCalls() - before

	line := fmt.Sprintf("gcp: create_calls=%d resync_mutating=%d node_change_calls=%d throttled_failures=%d op_failures_survived=%d\n",
		create, resync, nodeChange, throttledFailures, opFailures)
	if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}
