package azure

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure/azurefake"
	"github.com/portico-lb/portico/providers/providertest"
)

// The benchmark runs Azure time 1000 times faster: a load balancer update
// that takes about 20s in Azure takes 20ms in the fake, and a Retry-After of
// 1s is honoured as 1ms.
const (
	benchServices  = 100
	benchTimeScale = 1000
	benchOpLatency = 20 * time.Millisecond
	benchThrottle  = 0.30
	benchAttempts  = 200
)

// BenchmarkAzure drives 100 Services through the provider the way the
// controller does (concurrent workers, requeue after RetryError.After) and
// prints `make bench-azure`'s summary line:
//
//	create_calls       mutating ARM calls to create 100 Services at once
//	resync_mutating    mutating calls when all 100 are ensured again unchanged
//	node_change_calls  mutating calls when a node joins all 100 Services
//	throttled_failures Services that failed with a non-retryable error, or did
//	                   not converge within 200 requeues, while 30% of all ARM
//	                   requests were throttled (429, Retry-After 1s scaled to
//	                   1ms); each requeue waits the error's Retry-After
//	services_per_lb_write  Service changes per load balancer write during create
//	op_failures_survived   operations (load balancer, public IP and NSG rule
//	                   writes and deletes) that Azure accepted and then
//	                   ended Failed or Canceled (20% InternalServerError, 10%
//	                   CanceledAndSupersededDueToAnotherOperation, 5%
//	                   AnotherOperationInProgress) while 100 Services
//	                   changed ports and a node left, with every Service
//	                   converging anyway (the benchmark fails otherwise)
func BenchmarkAzure(b *testing.B) {
	for range b.N {
		e := newEnv(b, envOptions{latency: benchOpLatency, batchWindow: 200 * time.Millisecond, pageSize: 100})
		start := time.Now()
		nodes := []string{"node-a", "node-b", "node-c"}
		svc := func(i int, nodes []string) *providers.LoadBalancer {
			return providertest.DefaultDesired(key(fmt.Sprintf("bench-%03d", i)), nodes, []providers.Port{providertest.TCP(80, 30080), providertest.TCP(443, 30443)})
		}
		all := func(from int, nodes []string) []*providers.LoadBalancer {
			var out []*providers.LoadBalancer
			for i := from; i < from+benchServices; i++ {
				out = append(out, svc(i, nodes))
			}
			return out
		}

		before := e.srv.Stats()
		if failed := converge(e.p, all(0, nodes)); failed > 0 {
			b.Fatalf("create: %d Services did not converge", failed)
		}
		afterCreate := e.srv.Stats()
		createCalls := afterCreate.Mutating - before.Mutating
		lbWrites := afterCreate.LoadBalancerWrites - before.LoadBalancerWrites
		perWrite := float64(benchServices) / float64(max(lbWrites, 1))
		b.Logf("create: %s", time.Since(start))

		if failed := converge(e.p, all(0, nodes)); failed > 0 {
			b.Fatalf("resync: %d Services failed", failed)
		}
		afterResync := e.srv.Stats()
		resync := afterResync.Mutating - afterCreate.Mutating
		b.Logf("resync: %s", time.Since(start))

		grown := append(append([]string{}, nodes...), "node-d")
		if failed := converge(e.p, all(0, grown)); failed > 0 {
			b.Fatalf("node change: %d Services failed", failed)
		}
		nodeChange := e.srv.Stats().Mutating - afterResync.Mutating

		e.srv.SetThrottleRate(benchThrottle, time.Second/benchTimeScale)
		throttledFailures := convergeLog(b, e.p, all(benchServices, grown))
		throttledFailures += convergeLog(b, e.p, all(0, nodes)) // and a node leaves the first 100
		throttled := e.srv.Stats().Throttled
		b.Logf("throttled phase: %s", time.Since(start))
		e.srv.Recover()

		// Operations fail inside Azure after they were accepted.
		inj := e.srv.Faults()
		opsBefore := e.srv.Stats().OperationsFailed
		inj.FailOperations(fault.OpRule{Kind: fault.OpInternal, Rate: 0.20})
		inj.FailOperations(fault.OpRule{Kind: fault.OpSuperseded, Rate: 0.10})
		inj.FailOperations(fault.OpRule{Kind: fault.OpConflict, Rate: 0.05})
		moved := all(benchServices, nodes)
		for _, d := range moved {
			d.Ports = append(d.Ports, providertest.TCP(8443, 31443))
		}
		if failed := convergeLog(b, e.p, moved); failed > 0 {
			b.Fatalf("operation failures: %d Services did not converge", failed)
		}
		opFailures := e.srv.Stats().OperationsFailed - opsBefore
		inj.ClearOperations()
		b.Logf("operation failure phase: %s, %d operations failed", time.Since(start), opFailures)

		// Everything must be there, then everything must go.
		if n := countKind(e.srv.Resources(), azurefake.KindFrontend); n != 2*benchServices {
			b.Fatalf("%d frontends after the run, want %d", n, 2*benchServices)
		}
		var wg sync.WaitGroup
		for i := range 2 * benchServices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range benchAttempts {
					err := e.p.Delete(context.Background(), key(fmt.Sprintf("bench-%03d", i)))
					if err == nil {
						return
					}
					after, _ := providers.IsRetryable(err)
					time.Sleep(max(after/benchTimeScale, time.Millisecond))
				}
			}()
		}
		wg.Wait()
		e.srv.Settle()
		if left := e.srv.Resources(); len(left) != 1 { // the cluster's NSG
			b.Fatalf("after deleting every Service %d resources are left: %+v", len(left)-1, left)
		}
		b.ReportMetric(perWrite, "services/lbwrite")
		b.Logf("throttled requests during the throttling phase: %d", throttled)
		if i := b.N; i == 1 {
			fmt.Printf("azure: create_calls=%d resync_mutating=%d node_change_calls=%d throttled_failures=%d services_per_lb_write=%.1f op_failures_survived=%d\n",
				createCalls, resync, nodeChange, throttledFailures, perWrite, opFailures)
		}
	}
}

// converge ensures every Service concurrently, requeueing after
// RetryError.After (scaled), and returns how many never converged.
func converge(p *Provider, ds []*providers.LoadBalancer) int {
	return convergeLog(nil, p, ds)
}

// convergeLog is converge that logs why a Service did not converge.
func convergeLog(tb testing.TB, p *Provider, ds []*providers.LoadBalancer) int {
	var failed atomic.Int64
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			for range benchAttempts {
				if _, err = p.Ensure(context.Background(), d); err == nil {
					return
				}
				after, ok := providers.IsRetryable(err)
				if !ok {
					break
				}
				time.Sleep(max(after, time.Millisecond))
			}
			failed.Add(1)
			if tb != nil {
				tb.Logf("%s did not converge: %v", d.Key, err)
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}
