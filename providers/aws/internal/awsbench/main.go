// Command awsbench counts the AWS API calls Portico's AWS provider makes
// against the wire-level fake, and checks that 100 Services converge under
// injected throttling. `make bench-aws` runs it; the last line is
//
//	aws: create_calls=<n> resync_mutating=<n> node_change_calls=<n> throttled_failures=<n>
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/providers/providertest"
)

const cluster = "bench"

func main() {
	services := flag.Int("services", 100, "Services to converge under throttling")
	throttle := flag.Float64("throttle", 0.3, "fraction of API calls the fake throttles")
	workers := flag.Int("workers", 10, "concurrent reconcilers, like the controller's MaxConcurrentReconciles")
	maxTries := flag.Int("max-tries", 100, "Ensure attempts per Service before it counts as failed")
	flag.Parse()
	if err := run(*services, *throttle, *workers, *maxTries); err != nil {
		fmt.Fprintln(os.Stderr, "awsbench:", err)
		os.Exit(1)
	}
}

func run(services int, throttle float64, workers, maxTries int) error {
	ctx := context.Background()
	f := awsfake.New(awsfake.Options{Seed: 42})
	defer f.Close()
	f.SeedNetwork(cluster)
	p, err := aws.New(aws.Options{
		ClusterID:  cluster,
		AWS:        f.SDKConfig(awsfake.SDKOptions{MaxAttempts: 3, MaxBackoff: 20 * time.Millisecond}),
		RateLimit:  rate.Inf,
		RetryAfter: 20 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	desired := func(name string, nodes []string) *providers.LoadBalancer {
		k := providers.Key{ClusterID: cluster, Namespace: "bench", Name: name, UID: "uid-" + name}
		d := providertest.DefaultDesired(k, nodes, []providers.Port{providertest.TCP(80, 30080), providertest.TCP(443, 30443)})
		for i := range d.Nodes {
			d.Nodes[i].ProviderID = "aws:///us-east-1a/" + f.InstanceID(d.Nodes[i].Name)
		}
		return d
	}
	calls := func() (all, mutating int) {
		cs := f.Calls()
		for _, c := range cs {
			if c.Mutating {
				mutating++
			}
		}
		return len(cs), mutating
	}

	nodes := []string{"node-1", "node-2", "node-3"}
	all0, _ := calls()
	if _, err := p.Ensure(ctx, desired("single", nodes)); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	all1, mut1 := calls()
	createCalls := all1 - all0
	if _, err := p.Ensure(ctx, desired("single", nodes)); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	all2, mut2 := calls()
	resyncMutating := mut2 - mut1
	if _, err := p.Ensure(ctx, desired("single", []string{"node-1", "node-2", "node-4"})); err != nil {
		return fmt.Errorf("node change: %w", err)
	}
	all3, mut3 := calls()
	nodeChangeCalls := all3 - all2
	fmt.Printf("create: %d calls (%d mutating); no-op resync: %d calls (%d mutating); one node replaced: %d calls (%d mutating)\n",
		createCalls, mut1, all2-all1, resyncMutating, nodeChangeCalls, mut3-mut2)

	// 100 Services under injected throttling, reconciled by a small worker
	// pool that requeues RetryErrors after the provider's suggested delay.
	f.SetThrottleRate(throttle)
	start := time.Now()
	queue := make(chan int)
	var mu sync.Mutex
	failures, attempts, retries := 0, 0, 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range queue {
				d := desired(fmt.Sprintf("svc-%03d", i), nodes)
				converged := false
				for try := 0; try < maxTries; try++ {
					mu.Lock()
					attempts++
					mu.Unlock()
					_, err := p.Ensure(ctx, d)
					if err == nil {
						converged = true
						break
					}
					after, ok := providers.IsRetryable(err)
					if !ok {
						fmt.Fprintf(os.Stderr, "%s: permanent failure: %v\n", d.Key, err)
						break
					}
					mu.Lock()
					retries++
					mu.Unlock()
					time.Sleep(after)
				}
				if !converged {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
		})
	}
	for i := range services {
		queue <- i
	}
	close(queue)
	wg.Wait()
	elapsed := time.Since(start)

	// Verify without faults: every Service exists and a resync is a no-op.
	f.Recover()
	_, before := calls()
	for i := range services {
		d := desired(fmt.Sprintf("svc-%03d", i), nodes)
		st, err := p.Ensure(ctx, d)
		if err != nil || len(st.Ingress) == 0 || st.Backends.Total != len(nodes) {
			failures++
		}
	}
	_, after := calls()
	lbs := 0
	for _, r := range f.Resources() {
		if r.Kind == "loadBalancer" {
			lbs++
		}
	}
	fmt.Printf("%d services at %.0f%% throttling: %d Ensure calls, %d requeues, %s; verify resync mutating=%d; load balancers=%d\n",
		services, throttle*100, attempts, retries, elapsed.Round(time.Millisecond), after-before, lbs)
	if lbs != services+1 {
		failures += abs(services + 1 - lbs)
	}
	fmt.Printf("aws: create_calls=%d resync_mutating=%d node_change_calls=%d throttled_failures=%d\n",
		createCalls, resyncMutating, nodeChangeCalls, failures)
	return nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
