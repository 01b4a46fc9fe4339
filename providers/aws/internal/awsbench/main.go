// Command awsbench counts the AWS API calls Portico's AWS provider makes
// against the wire-level fake, and checks that Services converge under
// injected throttling and failed load balancer creations, and that a burst
// of Services gets addresses quickly at the default client-side rate limit.
// The fake starts every target "initial" and turns it healthy only after its
// health checks pass through the node security group. `make bench-aws` runs
// it; the last line is
//
//	aws: create_calls=<n> first_create_calls=<n> resync_mutating=<n> node_change_calls=<n> throttled_failures=<n> op_failures_survived=<n> burst20_address_seconds=<s>
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/providers/providertest"
)

const cluster = "bench"

func main() {
	services := flag.Int("services", 100, "Services to converge under throttling")
	throttle := flag.Float64("throttle", 0.3, "fraction of API calls the fake throttles")
	opFail := flag.Float64("op-failures", 0.1, "fraction of load balancer creations that end in state failed")
	workers := flag.Int("workers", 10, "concurrent reconcilers, like the controller's MaxConcurrentReconciles")
	maxTries := flag.Int("max-tries", 100, "Ensure attempts per Service before it counts as failed")
	burst := flag.Int("burst", 20, "Services created at once at the default client-side rate limit")
	flag.Parse()
	if err := run(*services, *throttle, *opFail, *workers, *maxTries, *burst); err != nil {
		fmt.Fprintln(os.Stderr, "awsbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	f *awsfake.Fake
	p *aws.Provider
}

func newBench(seed uint64, limit rate.Limit) (*bench, error) {
	f := awsfake.New(awsfake.Options{Seed: seed})
	f.SeedNetwork(cluster)
	opts := aws.Options{
		ClusterID:  cluster,
		AWS:        f.SDKConfig(awsfake.SDKOptions{MaxAttempts: 3, MaxBackoff: 20 * time.Millisecond}),
		RateLimit:  limit,
		RetryAfter: 20 * time.Millisecond,
	}
	p, err := aws.New(opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &bench{f: f, p: p}, nil
}

func (b *bench) desired(name string, nodes []string) *providers.LoadBalancer {
	k := providers.Key{ClusterID: cluster, Namespace: "bench", Name: name, UID: "uid-" + name}
	d := providertest.DefaultDesired(k, nodes, []providers.Port{providertest.TCP(80, 30080), providertest.TCP(443, 30443)})
	for i := range d.Nodes {
		d.Nodes[i].ProviderID = "aws:///us-east-1a/" + b.f.InstanceID(d.Nodes[i].Name)
	}
	return d
}

func (b *bench) calls() (all, mutating int) {
	st := b.f.Faults().Stats()
	return st.Calls, st.Mutating
}

// converge runs Ensure until it succeeds, sleeping the suggested delay
// between retryable failures, and returns the status and the attempts.
func (b *bench) converge(ctx context.Context, d *providers.LoadBalancer, maxTries int) (*providers.Status, int, error) {
	var err error
	for try := 1; try <= maxTries; try++ {
		var st *providers.Status
		if st, err = b.p.Ensure(ctx, d); err == nil {
			return st, try, nil
		}
		after, ok := providers.IsRetryable(err)
		if !ok {
			return nil, try, err
		}
		if os.Getenv("AWSBENCH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s try %d: retry after %s: %v\n", d.Key.Name, try, after, err)
		}
		time.Sleep(after)
	}
	return nil, maxTries, err
}

func run(services int, throttle, opFail float64, workers, maxTries, burst int) error {
	ctx := context.Background()
	b, err := newBench(42, rate.Inf)
	if err != nil {
		return err
	}
	defer b.f.Close()

	// Calls until the address is in status: one Ensure, targets still
	// initial. The first Service of a cluster also makes the backend
	// security group and opens the node security group; later ones reuse
	// both.
	nodes := []string{"node-1", "node-2", "node-3"}
	all0, _ := b.calls()
	st, err := b.p.Ensure(ctx, b.desired("first", nodes))
	if err != nil {
		return fmt.Errorf("first create: %w", err)
	}
	all1, _ := b.calls()
	firstCreate := all1 - all0
	if len(st.Ingress) == 0 || st.Backends.Healthy != 0 {
		return fmt.Errorf("first create: status %+v, want an address and no healthy target yet", st)
	}
	_, mut1 := b.calls()
	if _, err := b.p.Ensure(ctx, b.desired("single", nodes)); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	all2, mut2 := b.calls()
	createCalls := all2 - all1
	if _, err := b.p.Ensure(ctx, b.desired("single", nodes)); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	all3, mut3 := b.calls()
	resyncMutating := mut3 - mut2
	if _, err := b.p.Ensure(ctx, b.desired("single", []string{"node-1", "node-2", "node-4"})); err != nil {
		return fmt.Errorf("node change: %w", err)
	}
	all4, mut4 := b.calls()
	nodeChangeCalls := all4 - all3
	fmt.Printf("first create in the cluster: %d calls; create: %d calls (%d mutating); no-op resync: %d calls (%d mutating); one node replaced: %d calls (%d mutating)\n",
		firstCreate, createCalls, mut2-mut1, all3-all2, resyncMutating, nodeChangeCalls, mut4-mut3)

	// Many Services under injected throttling and failed creations,
	// reconciled by a small worker pool that requeues RetryErrors after
	// the provider's suggested delay.
	inj := b.f.Faults()
	b.f.SetThrottleRate(throttle)
	inj.FailOperations(fault.OpRule{Kind: fault.OpInternal, Rate: opFail, Op: "CreateLoadBalancer"})
	start := time.Now()
	queue := make(chan int)
	var mu sync.Mutex
	failures, attempts := 0, 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range queue {
				_, tries, err := b.converge(ctx, b.desired(fmt.Sprintf("svc-%03d", i), nodes), maxTries)
				mu.Lock()
				attempts += tries
				if err != nil {
					fmt.Fprintf(os.Stderr, "svc-%03d: %v\n", i, err)
					failures++
				}
				mu.Unlock()
			}
		})
	}
	for i := range services {
		queue <- i
	}
	close(queue)
	wg.Wait()
	elapsed := time.Since(start)

	// Verify without faults: every Service's load balancer ends active
	// (a failed one is replaced by the resync that sees it), its targets
	// healthy, and then a resync is a no-op.
	b.f.Recover()
	inj.ClearOperations()
	failedOps := inj.Stats().OperationsFailed
	for i := range services {
		d := b.desired(fmt.Sprintf("svc-%03d", i), nodes)
		ok := false
		for range 50 {
			st, _, err := b.converge(ctx, d, maxTries)
			lb, found := b.f.LoadBalancerByName(aws.LoadBalancerName(d.Key))
			if err == nil && found && lb.State(time.Now()) == "active" && len(st.Ingress) == 1 && st.Backends.Healthy == len(nodes) {
				ok = true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !ok {
			fmt.Fprintf(os.Stderr, "%s: never active with healthy targets\n", d.Key)
			failures++
		}
	}
	_, before := b.calls()
	for i := range services {
		if _, err := b.p.Ensure(ctx, b.desired(fmt.Sprintf("svc-%03d", i), nodes)); err != nil {
			failures++
		}
	}
	_, after := b.calls()
	lbs := 0
	for _, r := range b.f.Resources() {
		if r.Kind == "loadBalancer" {
			lbs++
		}
	}
	fmt.Printf("%d services at %.0f%% throttling and %.0f%% failed creations: %d Ensure calls, %s; %d creations failed and were replaced; verify resync mutating=%d; load balancers=%d\n",
		services, throttle*100, opFail*100, attempts, elapsed.Round(time.Millisecond), failedOps, after-before, lbs)
	if lbs != services+2 {
		failures += abs(services + 2 - lbs)
	}
	if after != before {
		failures++
	}
	survived := 0
	if failures == 0 {
		survived = failedOps
	}

	// A burst of Services created at once against a fresh cluster at the
	// default client-side rate limit (10 calls per second, burst 20):
	// the slowest one's time until its address is in status.
	slowest, err := burstCreate(ctx, burst, maxTries)
	if err != nil {
		return err
	}
	fmt.Printf("%d services created at once at the default rate limit: the last has its address after %s\n", burst, slowest.Round(10*time.Millisecond))

	fmt.Printf("aws: create_calls=%d first_create_calls=%d resync_mutating=%d node_change_calls=%d throttled_failures=%d op_failures_survived=%d burst%d_address_seconds=%.1f\n",
		createCalls, firstCreate, resyncMutating, nodeChangeCalls, failures, survived, burst, slowest.Seconds())
	return nil
}

func burstCreate(ctx context.Context, n, maxTries int) (time.Duration, error) {
	b, err := newBench(7, 0) // 0: the provider's default limit
	if err != nil {
		return 0, err
	}
	defer b.f.Close()
	nodes := []string{"node-1", "node-2", "node-3"}
	start := time.Now()
	var mu sync.Mutex
	var slowest time.Duration
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st, _, err := b.converge(ctx, b.desired(fmt.Sprintf("burst-%02d", i), nodes), maxTries)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || len(st.Ingress) == 0 {
				errs = append(errs, fmt.Errorf("burst-%02d: %v", i, err))
			}
			slowest = max(slowest, took)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, fmt.Errorf("burst: %v", errs)
	}
	return slowest, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
