package aws_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
)

// waitHealthy polls Observe until every target is healthy or d passes, and
// returns the last status.
func waitHealthy(t *testing.T, e *env, k providers.Key, d time.Duration) *providers.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := e.p.Observe(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if st.Backends.Total > 0 && st.Backends.Healthy == st.Backends.Total || time.Now().After(deadline) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nodeRulesFrom lists the node security group's rules whose source is sg.
func nodeRulesFrom(e *env, sg string) []awsfake.Rule {
	node, _ := e.fake.SecurityGroup(e.fake.NodeSecurityGroup())
	var out []awsfake.Rule
	for _, r := range node.Ingress {
		if r.SourceGroup == sg {
			out = append(out, r)
		}
	}
	return out
}

// TestNodeSecurityGroupAdmitsTheLoadBalancer: on a default EKS node group
// the node security group admits only its members, so the NLB's health
// checks and traffic reach the nodes only when Portico opens it to the load
// balancer's backend security group, as the aws-load-balancer-controller
// does. Without that the targets never turn healthy.
func TestNodeSecurityGroupAdmitsTheLoadBalancer(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("web")
	st := ensureOK(t, e, e.desired(k, []string{"n1", "n2"}, []providers.Port{tcp(80, 30080), udp(53, 30053)}))
	if st.Backends.Healthy != 0 {
		t.Errorf("right after create %d targets are healthy; the fake starts them initial", st.Backends.Healthy)
	}
	if st := waitHealthy(t, e, k, 2*time.Second); st.Backends.Healthy != 2 {
		t.Fatalf("backends %+v: the node security group never admitted the load balancer", st.Backends)
	}
	lb, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	var backend string
	for _, sg := range lb.SecurityGroups {
		if g, _ := e.fake.SecurityGroup(sg); g.Tags["portico.dev/role"] == "backend" {
			backend = sg
		}
	}
	if backend == "" || len(lb.SecurityGroups) != 2 {
		t.Fatalf("load balancer security groups %v, want its own and the cluster's backend group", lb.SecurityGroups)
	}
	protos := map[string]bool{}
	for _, r := range nodeRulesFrom(e, backend) {
		protos[r.Protocol] = protos[r.Protocol] || r.FromPort <= 30053 && r.ToPort >= 30080
	}
	if !protos["tcp"] || !protos["udp"] {
		t.Errorf("node rules from the backend group %+v, want TCP and UDP over the node ports", nodeRulesFrom(e, backend))
	}

	// A second Service reuses the backend group and adds no node rule.
	before := len(nodeRulesFrom(e, backend))
	ensureOK(t, e, e.desired(key("api"), []string{"n1", "n2"}, []providers.Port{tcp(443, 30443)}))
	if n := len(nodeRulesFrom(e, backend)); n != before {
		t.Errorf("a second Service changed the node rules from %d to %d", before, n)
	}
	if st := waitHealthy(t, e, key("api"), 2*time.Second); st.Backends.Healthy != 2 {
		t.Errorf("second Service backends %+v", st.Backends)
	}
	deleteOK(t, e, k)
	deleteOK(t, e, key("api"))
	if n := len(nodeRulesFrom(e, backend)); n != before {
		t.Errorf("deleting the Services changed the shared node rules (%d -> %d)", before, n)
	}
}

func TestNodeSecurityGroupRulesOptOut(t *testing.T) {
	t.Run("annotation", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		d := e.desired(key("manual"), []string{"n1"}, []providers.Port{tcp(80, 30080)})
		d.Annotations = map[string]string{aws.AnnotationManageBackendSecurityGroupRules: "false"}
		ensureOK(t, e, d)
		lb, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(d.Key))
		if len(lb.SecurityGroups) != 1 {
			t.Errorf("opted-out load balancer carries %v, want only its own group", lb.SecurityGroups)
		}
		if st := waitHealthy(t, e, d.Key, 100*time.Millisecond); st.Backends.Healthy != 0 {
			t.Errorf("opted out, yet %d targets turned healthy", st.Backends.Healthy)
		}
	})
	t.Run("flag", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		p, err := aws.New(aws.Options{ClusterID: testCluster, AWS: e.fake.SDKConfig(awsfake.SDKOptions{}), RetryAfter: 10 * time.Millisecond, DisableBackendSecurityGroupRules: true})
		if err != nil {
			t.Fatal(err)
		}
		e.p = p
		d := e.desired(key("manual"), []string{"n1"}, []providers.Port{tcp(80, 30080)})
		ensureOK(t, e, d)
		node, _ := e.fake.SecurityGroup(e.fake.NodeSecurityGroup())
		if len(node.Ingress) != 1 {
			t.Errorf("--aws-manage-backend-security-group-rules=false, yet the node group has rules %+v", node.Ingress)
		}
	})
}

// TestReplacementChecksBeforeDeleting: a change that needs a new load
// balancer is checked in full before the live one is deleted, so a mistake
// in the new settings is a condition, not an outage.
func TestReplacementChecksBeforeDeleting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ann    func(e *env) map[string]string
		reason string
	}{
		{"two subnets in one zone", func(e *env) map[string]string {
			return map[string]string{aws.AnnotationSubnets: e.public[0] + "," + e.private[0]}
		}, "InvalidAnnotation"},
		{"allocations that do not match the discovered subnets", func(e *env) map[string]string {
			return map[string]string{aws.AnnotationEIPAllocations: "eipalloc-00000000000000001"}
		}, "InvalidAnnotation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.fake.AddElasticIP("eipalloc-00000000000000001", "192.0.2.1", map[string]string{"portico.dev/cluster": testCluster})
			k := key("live")
			d := e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)})
			ensureOK(t, e, d)
			before, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
			d.Annotations = tc.ann(e)
			_, err := e.p.Ensure(t.Context(), d)
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("got %v, want ConfigError %s", err, tc.reason)
			}
			after, ok := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
			if !ok || after.ARN != before.ARN {
				t.Fatal("the live load balancer was deleted before the new settings were checked")
			}
		})
	}
}

func TestRemovingSubnetsAnnotationReturnsToDiscovery(t *testing.T) {
	e := newEnv(t, envOptions{})
	k := key("moved")
	d := e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)})
	d.Annotations = map[string]string{aws.AnnotationSubnets: e.public[1]}
	ensureOK(t, e, d)
	d.Annotations = nil
	ensureOK(t, e, d)
	lb, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	var got []string
	for _, z := range lb.Zones {
		got = append(got, z.SubnetID)
	}
	slices.Sort(got)
	if !slices.Equal(got, e.public) {
		t.Fatalf("subnets %v after removing the annotation, want the discovered %v", got, e.public)
	}
	// A steady state then stays put.
	before := e.fake.MutatingCalls()
	ensureOK(t, e, d)
	if n := e.fake.MutatingCalls() - before; n != 0 {
		t.Errorf("resync after the move made %d mutating calls", n)
	}
}

// TestInUseTargetGroupBacksOff: AWS keeps a target group in use for a while
// after its load balancer is deleted; Portico asks to be called back later
// each time, not every second.
func TestInUseTargetGroupBacksOff(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := newEnv(t, envOptions{fake: awsfake.Options{Consistency: time.Minute, Clock: clock}})
	e.p, _ = aws.New(aws.Options{ClusterID: testCluster, AWS: e.fake.SDKConfig(awsfake.SDKOptions{}), RetryAfter: 5 * time.Second})
	k := key("held")
	d := e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)})
	if _, err := e.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute) // everything visible; time then stands still
	mu.Unlock()
	var delays []time.Duration
	for range 4 {
		err := e.p.Delete(t.Context(), k)
		after, ok := providers.IsRetryable(err)
		if !ok {
			t.Fatalf("Delete while the group is in use: %v, want a RetryError", err)
		}
		delays = append(delays, after)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Fatalf("retry delays %v: want each longer than the last (%v)", delays, e.p.Delete(t.Context(), k))
		}
	}
}

func TestRequestedIPIsRefusedClearly(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := e.desired(key("pinned"), []string{"n1"}, []providers.Port{tcp(80, 30080)})
	d.RequestedIPs = []netip.Addr{netip.MustParseAddr("203.0.113.7")}
	_, err := e.p.Ensure(t.Context(), d)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != aws.ReasonRequestedIPUnsupported {
		t.Fatalf("Ensure with lb.portico.dev/ip: got %v, want ConfigError %s", err, aws.ReasonRequestedIPUnsupported)
	}
	if len(e.fake.Resources()) != 0 {
		t.Errorf("resources were created for a Service AWS cannot honour: %+v", e.fake.Resources())
	}
}

// TestFailedLoadBalancerIsReplaced: an NLB whose creation failed inside AWS
// (state "failed") is deleted and built again.
func TestFailedLoadBalancerIsReplaced(t *testing.T) {
	e := newEnv(t, envOptions{fake: awsfake.Options{Second: -1}})
	e.fake.Faults().FailOperations(fault.OpRule{Kind: fault.OpInternal, Times: 1, Op: "CreateLoadBalancer"})
	k := key("flaky")
	d := e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)})
	ensureOK(t, e, d)
	first, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	ensureOK(t, e, d)
	second, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	if second.ARN == first.ARN || second.State(time.Now()) != "active" {
		t.Fatalf("failed load balancer %s kept (now %s, %s)", first.ARN, second.ARN, second.State(time.Now()))
	}
}

// TestEarlierLoadBalancerGetsTheBackendGroup: a load balancer an earlier
// Portico made without the backend group gets it added, and its targets
// turn healthy.
func TestEarlierLoadBalancerGetsTheBackendGroup(t *testing.T) {
	e := newEnv(t, envOptions{})
	old, err := aws.New(aws.Options{ClusterID: testCluster, AWS: e.fake.SDKConfig(awsfake.SDKOptions{}), RetryAfter: 10 * time.Millisecond, DisableBackendSecurityGroupRules: true})
	if err != nil {
		t.Fatal(err)
	}
	k := key("upgraded")
	d := e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)})
	if _, err := old.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	ensureOK(t, e, d)
	lb, _ := e.fake.LoadBalancerByName(aws.LoadBalancerName(k))
	if len(lb.SecurityGroups) != 2 {
		t.Fatalf("load balancer groups %v, want its own and the backend group", lb.SecurityGroups)
	}
	if st := waitHealthy(t, e, k, 2*time.Second); st.Backends.Healthy != 1 {
		t.Fatalf("backends %+v after the upgrade", st.Backends)
	}
	before := e.fake.MutatingCalls()
	ensureOK(t, e, d)
	if n := e.fake.MutatingCalls() - before; n != 0 {
		t.Errorf("resync after the upgrade made %d mutating calls", n)
	}
}

// TestTargetQuotaIsAClearCondition: more registrations in one zone than
// the NLB quota allows (a target counts once per target group) is a
// QuotaExceeded ConfigError naming the quota, not an endless retry.
func TestTargetQuotaIsAClearCondition(t *testing.T) {
	e := newEnv(t, envOptions{fake: awsfake.Options{TargetsPerZone: 5}})
	d := e.desired(key("big"), []string{"n1", "n2", "n3"}, []providers.Port{tcp(80, 30080), tcp(443, 30443)})
	_, err := e.p.Ensure(t.Context(), d)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != "QuotaExceeded" || !strings.Contains(ce.Message, "TooManyTargets") {
		t.Fatalf("6 registrations in one zone with a quota of 5: got %v, want ConfigError QuotaExceeded", err)
	}
}
