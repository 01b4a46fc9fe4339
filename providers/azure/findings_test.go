package azure

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure/azurefake"
)

// Tests for the findings of issue 15 on Azure, each through the real SDK
// clients against the fake, which refuses what Azure refuses.

// Azure forbids '/' in tag names: Portico's marks must be spelled so that
// the first public IP and load balancer write is accepted.
func TestOwnershipTagsAreValidAzureTags(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := desired("web")
	if _, err := e.p.Ensure(context.Background(), d); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	for _, r := range e.srv.Resources() {
		for name := range r.Tags {
			if strings.ContainsAny(name, `<>%&\?/`) {
				t.Errorf("%s %s carries tag name %q, which Azure refuses", r.Kind, r.ID, name)
			}
		}
	}
	pip := ResourceName(d.Key)
	for _, r := range e.srv.Resources() {
		if r.Kind == azurefake.KindPublicIP && r.Name == pip {
			want := map[string]string{TagCluster: testCluster, TagService: "default/web", TagManagedBy: "portico"}
			for k, v := range want {
				if r.Tags[k] != v {
					t.Errorf("public IP tag %s = %q, want %q", k, r.Tags[k], v)
				}
			}
		}
	}
}

// A Service whose namespace and name are long still gets its NSG rules
// (descriptions at most 140 characters), and its marks still tell it apart.
func TestLongNamesFitSecurityRuleDescriptions(t *testing.T) {
	e := newEnv(t, envOptions{})
	long := desired(strings.Repeat("n", 63))
	long.Key.Namespace = strings.Repeat("s", 63)
	if _, err := e.p.Ensure(context.Background(), long); err != nil {
		t.Fatalf("Ensure of a Service with a 63-character namespace and name: %v", err)
	}
	rule := e.srv.SecurityRule(e.p.securityRuleID(ResourceName(long.Key)))
	if rule == nil {
		t.Fatal("no security rule")
	}
	desc := deref(rule.Properties.Description)
	if len(desc) > 140 {
		t.Fatalf("description of %d characters", len(desc))
	}
	if !owns(descriptionMarks(desc), long.Key) {
		t.Errorf("description %q does not mark the rule as the Service's", desc)
	}
	other := long.Key
	other.Name = strings.Repeat("n", 62) + "m"
	if owns(descriptionMarks(desc), other) {
		t.Errorf("description %q also claims %s", desc, other)
	}
	if err := e.p.Delete(context.Background(), long.Key); err != nil {
		t.Fatal(err)
	}
	if e.srv.SecurityRule(e.p.securityRuleID(ResourceName(long.Key))) != nil {
		t.Error("Delete left the rule: its ownership could not be verified")
	}
}

// Rules of Portico's public load balancer do not take over the nodes'
// outbound SNAT, which the cluster's own outbound path (AKS's load balancer
// outbound rule, a NAT gateway) provides; internal rules never set it.
func TestPublicRulesDisableOutboundSNAT(t *testing.T) {
	e := newEnv(t, envOptions{})
	ensure(t, e.p, desired("pub"))
	ensure(t, e.p, internal(desired("int"), ""))
	for _, r := range e.publicLB().Properties.LoadBalancingRules {
		if !deref(r.Properties.DisableOutboundSnat) {
			t.Errorf("public rule %s leaves disableOutboundSnat unset", deref(r.Name))
		}
	}
	for _, r := range e.internalLB().Properties.LoadBalancingRules {
		if r.Properties.DisableOutboundSnat != nil && *r.Properties.DisableOutboundSnat {
			t.Errorf("internal rule %s sets disableOutboundSnat", deref(r.Name))
		}
	}

	// --azure-outbound-snat lets the public rules provide SNAT.
	snat := newEnv(t, envOptions{outboundSNAT: true})
	ensure(t, snat.p, desired("pub"))
	for _, r := range snat.publicLB().Properties.LoadBalancingRules {
		if deref(r.Properties.DisableOutboundSnat) {
			t.Errorf("with outbound SNAT on, rule %s disables it", deref(r.Name))
		}
	}
}

// IP-based backend pools need the virtual network: without
// --azure-vnet-name a Service gets a clear ConfigError and nothing is
// created.
func TestBackendPoolsNeedAVirtualNetwork(t *testing.T) {
	e := newEnv(t, envOptions{noVNet: true})
	var ce *providers.ConfigError
	if _, err := e.p.Ensure(context.Background(), desired("web")); !errors.As(err, &ce) || ce.Reason != ReasonNoVirtualNetwork {
		t.Fatalf("got %v, want ConfigError %s", err, ReasonNoVirtualNetwork)
	}
	if n := e.srv.Stats().Mutating; n != 0 {
		t.Errorf("made %d mutating calls", n)
	}
}

// A load balancer write whose operation fails inside Azure (status Failed,
// InternalServerError) is retryable for every Service in the batch, and the
// Services converge.
func TestFailedOperationInABatchIsRetryable(t *testing.T) {
	e := newEnv(t, envOptions{batchWindow: 50 * time.Millisecond, noNSG: true})
	e.srv.Faults().FailOperations(fault.OpRule{Kind: fault.OpInternal, Times: 1, Op: azurefake.OpLoadBalancerWrite})
	errs := ensureAll(e.p, desired("a"), desired("b"), desired("c"))
	for i, err := range errs {
		if err == nil {
			continue
		}
		if _, ok := providers.IsRetryable(err); !ok {
			t.Errorf("Service %d: a failed operation became permanent: %v", i, err)
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		ensure(t, e.p, desired(name))
	}
	if n := e.srv.Stats().OperationsFailed; n != 1 {
		t.Errorf("%d operations failed, want 1", n)
	}
}

// A quota failure reported by an operation names the quota in a
// QuotaExceeded condition, and fails only the Service that hit it: the
// batch is split and the others go in.
func TestQuotaFailureIsAConditionNamingTheQuota(t *testing.T) {
	e := newEnv(t, envOptions{noNSG: true})
	e.srv.Faults().FailOperations(fault.OpRule{Kind: fault.OpQuota, Times: 1, Op: azurefake.OpPublicIPWrite})
	_, err := e.p.Ensure(context.Background(), desired("web"))
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != ReasonQuotaExceeded || !strings.Contains(ce.Message, "PublicIPCountLimitReached") {
		t.Fatalf("got %v, want ConfigError %s naming PublicIPCountLimitReached", err, ReasonQuotaExceeded)
	}

	// In a batch, the load balancer write that hits a quota is split: each
	// Service is written on its own, so the others are not failed with it.
	b := newEnv(t, envOptions{batchWindow: 50 * time.Millisecond, noNSG: true})
	ensure(t, b.p, desired("seed"))
	b.srv.Faults().FailOperations(fault.OpRule{Kind: fault.OpQuota, Times: 1, Op: azurefake.OpLoadBalancerWrite})
	errs := ensureAll(b.p, desired("a"), desired("b"))
	for i, err := range errs {
		if err != nil {
			t.Errorf("Service %d failed with its batch: %v", i, err)
		}
	}
	if n := len(frontendNames(b.publicLB())); n != 3 {
		t.Errorf("%d frontends, want 3", n)
	}
}

// A load balancer limit (here frontends per load balancer, lowered from
// Azure's 600 so the test reaches it) is a QuotaExceeded condition naming
// it, for the Service that does not fit only.
func TestLoadBalancerLimitIsAQuotaCondition(t *testing.T) {
	e := newEnv(t, envOptions{batchWindow: 50 * time.Millisecond, noNSG: true, limits: azurefake.Limits{FrontendsPerLoadBalancer: 2}})
	ensure(t, e.p, desired("a"))
	errs := ensureAll(e.p, desired("b"), desired("c"))
	failed := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		var ce *providers.ConfigError
		if !errors.As(err, &ce) || ce.Reason != ReasonQuotaExceeded || !strings.Contains(ce.Message, "LoadBalancerFrontendIPConfigurationCountLimitReached") {
			t.Errorf("got %v, want ConfigError %s naming the limit", err, ReasonQuotaExceeded)
		}
	}
	if failed != 1 || len(frontendNames(e.publicLB())) != 2 {
		t.Errorf("%d Services failed and %d frontends exist, want 1 and 2", failed, len(frontendNames(e.publicLB())))
	}
}

// Conflicts and superseded operations are retryable.
func TestConflictingOperationsAreRetryable(t *testing.T) {
	for _, k := range []fault.Kind{fault.OpConflict, fault.OpSuperseded} {
		e := newEnv(t, envOptions{noNSG: true})
		ensure(t, e.p, desired("seed"))
		e.srv.Faults().FailOperations(fault.OpRule{Kind: k, Times: 1, Op: azurefake.OpLoadBalancerWrite})
		_, err := e.p.Ensure(context.Background(), desired("web"))
		if _, ok := providers.IsRetryable(err); !ok {
			t.Errorf("%s: got %v, want a retryable error", k, err)
		}
	}
}

// lb.portico.dev/allow-shared-ip cannot be honoured on Azure (every
// Service has its own frontend): a clear condition, nothing created.
func TestSharedIPIsAClearCondition(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := desired("shared")
	d.SharingKey = "team-a"
	var ce *providers.ConfigError
	if _, err := e.p.Ensure(context.Background(), d); !errors.As(err, &ce) || ce.Reason != ReasonUnsupportedAnnotation || !strings.Contains(ce.Message, "lb.portico.dev/allow-shared-ip") {
		t.Fatalf("got %v, want ConfigError %s naming the annotation", err, ReasonUnsupportedAnnotation)
	}
	if n := e.srv.Stats().Mutating; n != 0 {
		t.Errorf("made %d mutating calls", n)
	}
}

// ensureAll ensures the Services concurrently, once each.
func ensureAll(p *Provider, ds ...*providers.LoadBalancer) []error {
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.Ensure(context.Background(), d)
		}()
	}
	wg.Wait()
	return errs
}
