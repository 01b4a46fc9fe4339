package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure/azurefake"
	"github.com/portico-lb/portico/providers/providertest"
)

func (e *env) publicLB() *armnetwork.LoadBalancer {
	pub, _ := e.p.LoadBalancerNames()
	return e.srv.LoadBalancer(e.p.loadBalancerID(pub))
}

func (e *env) internalLB() *armnetwork.LoadBalancer {
	_, in := e.p.LoadBalancerNames()
	return e.srv.LoadBalancer(e.p.loadBalancerID(in))
}

func frontendNames(lb *armnetwork.LoadBalancer) []string {
	var out []string
	if lb == nil || lb.Properties == nil {
		return out
	}
	for _, fe := range lb.Properties.FrontendIPConfigurations {
		out = append(out, deref(fe.Name))
	}
	return out
}

func countKind(rs []azurefake.Resource, kind string) int {
	n := 0
	for _, r := range rs {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// Two writers (two providers, so no shared batching) update the shared load
// balancer at the same time: the second one's PUT lands between the first
// one's GET and PUT. The first PUT must fail with 412 and be redone on fresh
// state, so both Services end up in the load balancer.
func TestConcurrentWritersNoLostUpdate(t *testing.T) {
	e := newEnv(t, envOptions{})
	other := e.provider(t, envOptions{})
	ensure(t, e.p, desired("seed")) // the load balancer exists

	var fired atomic.Bool
	done := make(chan error, 1)
	e.srv.SetHook(func(r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/loadBalancers/") && fired.CompareAndSwap(false, true) {
			// Runs before writer A's PUT is handled: writer B reads and
			// writes the load balancer in between.
			_, err := other.Ensure(context.Background(), desired("writer-b"))
			done <- err
		}
	})
	ensure(t, e.p, desired("writer-a"))
	if err := <-done; err != nil {
		t.Fatalf("writer B: %v", err)
	}
	e.srv.SetHook(nil)

	if got := e.srv.Stats().PreconditionFailed; got < 1 {
		t.Errorf("PreconditionFailed = %d, want at least one 412 for writer A's stale ETag", got)
	}
	names := strings.Join(frontendNames(e.publicLB()), ",")
	for _, n := range []string{"seed", "writer-a", "writer-b"} {
		if !strings.Contains(names, ResourceName(key(n))) {
			t.Errorf("frontend of %s lost; load balancer holds %s", n, names)
		}
	}
}

// Two Services updated concurrently many times by independent writers:
// whatever the interleaving, no update is lost.
func TestConcurrentServicesUpdates(t *testing.T) {
	e := newEnv(t, envOptions{latency: 2 * time.Millisecond})
	writers := []*Provider{e.p, e.provider(t, envOptions{})}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("svc-%d", i)
			for round := range 6 {
				nodes := []string{"node-a", fmt.Sprintf("node-%d", round+1)}
				d := desired(name, nodes...)
				var err error
				for range 50 {
					if _, err = w.Ensure(context.Background(), d); err == nil {
						break
					}
					if _, ok := providers.IsRetryable(err); !ok {
						break
					}
					time.Sleep(time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("%s round %d: %w", name, round, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	lb := e.publicLB()
	for i := range writers {
		base := ResourceName(key(fmt.Sprintf("svc-%d", i)))
		if findFrontend(lb, base) == nil {
			t.Errorf("svc-%d frontend lost", i)
		}
		for _, bp := range lb.Properties.BackendAddressPools {
			if deref(bp.Name) == base {
				var got []string
				for _, a := range bp.Properties.LoadBalancerBackendAddresses {
					got = append(got, deref(a.Name))
				}
				if strings.Join(got, ",") != "node-6,node-a" {
					t.Errorf("svc-%d pool = %v, want the last round's [node-6 node-a]", i, got)
				}
			}
		}
	}
}

// Many Services ensured at once share load balancer writes.
func TestBatchingCoalescesWrites(t *testing.T) {
	e := newEnv(t, envOptions{batchWindow: 50 * time.Millisecond, noNSG: true})
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ensure(t, e.p, desired(fmt.Sprintf("batch-%d", i)))
		}()
	}
	wg.Wait()
	writes, changes := e.p.LoadBalancerWrites()
	if writes >= n/2 {
		t.Errorf("%d Services took %d load balancer writes, want batching to need fewer than %d", n, writes, n/2)
	}
	if changes < n {
		t.Errorf("writes carried %d changes, want at least %d", changes, n)
	}
	if got := len(frontendNames(e.publicLB())); got != n {
		t.Errorf("load balancer has %d frontends, want %d", got, n)
	}
}

func TestThrottlingReturnsRetryAfter(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.srv.InjectThrottle(1, 7*time.Second)
	_, err := e.p.Ensure(context.Background(), desired("throttled"))
	after, ok := providers.IsRetryable(err)
	if !ok || after != 7*time.Second {
		t.Fatalf("Ensure under 429 Retry-After: 7 = (%v, retryable %v, after %s), want RetryError after 7s", err, ok, after)
	}
	if n := e.srv.Stats().Throttled; n != 1 {
		t.Errorf("throttled answers = %d, want 1 (the SDK must not retry 429 itself)", n)
	}
	ensure(t, e.p, desired("throttled"))
}

func TestServerErrorsAreRetriedBySDK(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.srv.InjectServerErrors(2)
	if _, err := e.p.Ensure(context.Background(), desired("flaky")); err != nil {
		t.Fatalf("two 500s should be absorbed by the SDK's retries: %v", err)
	}
	if n := e.srv.Stats().ServerErrors; n != 2 {
		t.Errorf("server errors served = %d, want 2", n)
	}
}

func TestInternalFrontendAndSchemeSwitch(t *testing.T) {
	e := newEnv(t, envOptions{})
	st := ensure(t, e.p, internal(desired("ilb"), ""))
	if !netip.MustParsePrefix("10.240.0.0/16").Contains(st.Ingress[0].IP) {
		t.Errorf("internal address %s is not in the subnet range", st.Ingress[0].IP)
	}
	if countKind(e.srv.Resources(), azurefake.KindPublicIP) != 0 {
		t.Error("an internal Service got a public IP")
	}
	fe := findFrontend(e.internalLB(), ResourceName(key("ilb")))
	if fe == nil || !strings.HasSuffix(deref(fe.Properties.Subnet.ID), "/virtualNetworks/aks-vnet/subnets/aks-subnet") {
		t.Fatalf("internal frontend = %+v, want it in aks-vnet/aks-subnet", fe)
	}

	// Static address, then a move to the public load balancer.
	st = ensure(t, e.p, internal(desired("ilb"), "10.240.9.9"))
	if st.Ingress[0].IP.String() != "10.240.9.9" {
		t.Errorf("requested internal IP: got %s", st.Ingress[0].IP)
	}
	st = ensure(t, e.p, desired("ilb"))
	if !netip.MustParsePrefix("20.60.0.0/16").Contains(st.Ingress[0].IP) {
		t.Errorf("after switching to external the address is %s", st.Ingress[0].IP)
	}
	e.srv.Settle()
	if e.internalLB() != nil {
		t.Error("the internal load balancer outlived its last frontend")
	}
	// And back: the public IP goes.
	ensure(t, e.p, internal(desired("ilb"), ""))
	e.srv.Settle()
	if n := countKind(e.srv.Resources(), azurefake.KindPublicIP); n != 0 {
		t.Errorf("%d public IPs left after switching to internal", n)
	}
	if e.publicLB() != nil {
		t.Error("the public load balancer outlived its last frontend")
	}
}

// One invalid Service in a batch must not fail the others.
func TestInvalidChangeIsIsolatedFromItsBatch(t *testing.T) {
	e := newEnv(t, envOptions{batchWindow: 50 * time.Millisecond, noNSG: true})
	ensure(t, e.p, internal(desired("holder"), "10.240.5.5"))
	var wg sync.WaitGroup
	var goodErr, badErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, goodErr = e.p.Ensure(context.Background(), internal(desired("good"), ""))
	}()
	go func() {
		defer wg.Done()
		_, badErr = e.p.Ensure(context.Background(), internal(desired("bad"), "10.240.5.5"))
	}()
	wg.Wait()
	if goodErr != nil {
		t.Errorf("valid Service failed with its batch: %v", goodErr)
	}
	var ce *providers.ConfigError
	if !errors.As(badErr, &ce) || ce.Reason != "AddressInUse" {
		t.Errorf("Service asking for a taken address: got %v, want ConfigError AddressInUse", badErr)
	}
}

func TestSecurityRules(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := desired("nsg-a")
	a.SourceRanges = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.51.100.7/32")}
	ensure(t, e.p, a)
	ensure(t, e.p, desired("nsg-b"))

	ruleA := e.srv.SecurityRule(e.p.securityRuleID(ResourceName(a.Key)))
	ruleB := e.srv.SecurityRule(e.p.securityRuleID(ResourceName(key("nsg-b"))))
	if ruleA == nil || ruleB == nil {
		t.Fatal("security rules missing")
	}
	if got := strings.Join(fromPtrSlice(ruleA.Properties.SourceAddressPrefixes), ","); got != "198.51.100.7/32,203.0.113.0/24" {
		t.Errorf("rule A sources = %s", got)
	}
	if got := deref(ruleB.Properties.SourceAddressPrefix); got != "Internet" {
		t.Errorf("rule B source = %s, want Internet", got)
	}
	if got := strings.Join(fromPtrSlice(ruleA.Properties.DestinationPortRanges), ","); got != "30080" {
		t.Errorf("rule A ports = %s, want the node port", got)
	}
	if deref(ruleA.Properties.Priority) == deref(ruleB.Properties.Priority) {
		t.Errorf("two rules share priority %d", deref(ruleA.Properties.Priority))
	}

	// Narrowing the ranges rewrites the rule in place, keeping its priority.
	a.SourceRanges = a.SourceRanges[:1]
	ensure(t, e.p, a)
	updated := e.srv.SecurityRule(deref(ruleA.ID))
	if got := strings.Join(fromPtrSlice(updated.Properties.SourceAddressPrefixes), ","); got != "203.0.113.0/24" {
		t.Errorf("after update sources = %s", got)
	}
	if deref(updated.Properties.Priority) != deref(ruleA.Properties.Priority) {
		t.Error("update moved the rule's priority")
	}
}

func TestUserProvidedPublicIPIsNeverDeleted(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.srv.AddPublicIP(testSub, testRG, "my-static-ip", nil)
	d := withAnnotations(desired("byo"), AnnotationPublicIPName, "my-static-ip")
	st := ensure(t, e.p, d)
	var addr string
	for _, r := range e.srv.Resources() {
		if r.ID == id {
			addr = "found"
		}
	}
	if addr == "" || st.Resources[2].ID != id {
		t.Fatalf("status resources %+v do not use %s", st.Resources, id)
	}
	if err := e.p.Delete(context.Background(), d.Key); err != nil {
		t.Fatal(err)
	}
	e.srv.Settle()
	if countKind(e.srv.Resources(), azurefake.KindPublicIP) != 1 {
		t.Error("Delete removed the user's public IP")
	}
}

func TestProbeAndRuleSettings(t *testing.T) {
	e := newEnv(t, envOptions{noNSG: true})
	d := desired("local")
	d.TrafficPolicy, d.HealthCheckNodePort = providers.TrafficPolicyLocal, 32000
	d.SessionAffinityTimeout = time.Hour
	ensure(t, e.p, withAnnotations(d, AnnotationIdleTimeout, "15", AnnotationTCPReset, "false", AnnotationProbeInterval, "10"))
	lb := e.publicLB()
	base := ResourceName(d.Key)
	var probe *armnetwork.Probe
	for _, pr := range lb.Properties.Probes {
		if deref(pr.Name) == base {
			probe = pr
		}
	}
	if probe == nil || deref(probe.Properties.Port) != 32000 || deref(probe.Properties.RequestPath) != "/healthz" || deref(probe.Properties.IntervalInSeconds) != 10 {
		t.Fatalf("probe = %+v, want HTTP /healthz on healthCheckNodePort 32000 every 10s", probe)
	}
	rule := lb.Properties.LoadBalancingRules[0].Properties
	if deref(rule.IdleTimeoutInMinutes) != 15 || deref(rule.EnableTCPReset) || deref(rule.LoadDistribution) != armnetwork.LoadDistributionSourceIP || deref(rule.BackendPort) != 30080 {
		t.Errorf("rule = idle %d reset %v distribution %s backend %d", deref(rule.IdleTimeoutInMinutes), deref(rule.EnableTCPReset), deref(rule.LoadDistribution), deref(rule.BackendPort))
	}
	// Pod targets: pool of pod IPs, backend port = target port.
	d2 := desired("pods")
	d2.TargetPods = true
	d2.Endpoints = []providers.Endpoint{{IP: netip.MustParseAddr("10.244.1.5"), Ready: true}, {IP: netip.MustParseAddr("10.244.1.6")}}
	st := ensure(t, e.p, d2)
	if st.Backends.Total != 1 {
		t.Errorf("pod targets: %d backends, want the 1 ready endpoint", st.Backends.Total)
	}
}

func TestInvalidInputIsConfigError(t *testing.T) {
	e := newEnv(t, envOptions{})
	dual := desired("dual")
	dual.DualStack, dual.IPFamilies = true, []string{"IPv4", "IPv6"}
	sctp := desired("sctp")
	sctp.Ports = []providers.Port{{Name: "s", Protocol: providers.SCTP, Port: 9, NodePort: 30009}}
	ip := desired("ip")
	ip.RequestedIPs = []netip.Addr{netip.MustParseAddr("20.60.0.9")}
	for name, d := range map[string]*providers.LoadBalancer{
		"bad annotation": withAnnotations(desired("ann"), AnnotationIdleTimeout, "1000"),
		"dual stack":     dual,
		"sctp":           sctp,
		"public ip":      ip,
	} {
		var ce *providers.ConfigError
		if _, err := e.p.Ensure(context.Background(), d); !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want ConfigError", name, err)
		}
	}
	if n := e.srv.Stats().Mutating; n != 0 {
		t.Errorf("invalid input made %d mutating calls", n)
	}
}

// TestPodTargetsNeedAVirtualNetwork: IP-based backend pools name the
// virtual network of each address
// (https://learn.microsoft.com/azure/load-balancer/backend-pool-management#configure-backend-pool-by-ip-address-and-virtual-network),
// so without --azure-vnet-name a pod-targeting Service is a clear
// ConfigError before any call, never a pool Azure rejects.
func TestPodTargetsNeedAVirtualNetwork(t *testing.T) {
	e := newEnv(t, envOptions{noVNet: true})
	d := desired("pods")
	d.TargetPods = true
	d.Endpoints = []providers.Endpoint{{IP: netip.MustParseAddr("10.244.1.5"), Ready: true}}
	var ce *providers.ConfigError
	if _, err := e.p.Ensure(context.Background(), d); !errors.As(err, &ce) || ce.Reason != ReasonPodTargetsNeedVNet {
		t.Fatalf("got %v, want ConfigError %s", err, ReasonPodTargetsNeedVNet)
	}
	if n := e.srv.Stats().Mutating; n != 0 {
		t.Errorf("made %d mutating calls", n)
	}
}

func TestStatusAndCost(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := providertest.DefaultDesired(key("cost"), []string{"a", "b", "c"}, []providers.Port{providertest.TCP(80, 30080), providertest.TCP(443, 30443)})
	st := ensure(t, e.p, d)
	if st.Cost.Kind != CostKind || st.Cost.Region != testLocation || st.Cost.Units["rules"] != 2 || st.Cost.Units["publicIPs"] != 1 {
		t.Errorf("cost = %+v", st.Cost)
	}
	// The usage meter reads the shared load balancer's ByteCount for this
	// Service's frontend address.
	if want := st.Resources[0].ID + "#" + st.Ingress[0].IP.String(); st.Cost.MeterID != want {
		t.Errorf("cost meter id %q, want %q", st.Cost.MeterID, want)
	}
	if st.Backends.Total != 3 || st.Backends.Healthy != -1 {
		t.Errorf("backends = %+v", st.Backends)
	}
	kinds := map[string]int{}
	for _, r := range st.Resources {
		kinds[r.Kind]++
	}
	want := map[string]int{"loadBalancer": 1, "frontendIPConfiguration": 1, "publicIPAddress": 1, "loadBalancingRule": 2, "probe": 1, "backendAddressPool": 1, "securityRule": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("resource kinds = %v, want %v", kinds, want)
	}
}

// New Services created at once get distinct NSG priorities.
func TestSecurityRulePrioritiesUnderConcurrency(t *testing.T) {
	e := newEnv(t, envOptions{batchWindow: 20 * time.Millisecond, latency: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ensure(t, e.p, desired(fmt.Sprintf("prio-%d", i)))
		}()
	}
	wg.Wait()
	seen := map[int32]string{}
	for _, r := range e.srv.Resources() {
		if r.Kind != azurefake.KindSecurityRule {
			continue
		}
		prio := deref(e.srv.SecurityRule(r.ID).Properties.Priority)
		if other, dup := seen[prio]; dup {
			t.Errorf("rules %s and %s share priority %d", other, r.Name, prio)
		}
		seen[prio] = r.Name
	}
	if len(seen) != 12 {
		t.Errorf("%d security rules, want 12", len(seen))
	}
}
