package aws_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/providers/providertest"
)

const testCluster = "conformance"

// env is a provider whose real SDK clients talk to a fake AWS endpoint.
type env struct {
	fake    *awsfake.Fake
	p       *aws.Provider
	public  []string
	private []string
}

type envOptions struct {
	fake awsfake.Options
	sdk  awsfake.SDKOptions
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	f := awsfake.New(o.fake)
	t.Cleanup(f.Close)
	pub, priv := f.SeedNetwork(testCluster)
	p, err := aws.New(aws.Options{
		ClusterID:  testCluster,
		AWS:        f.SDKConfig(o.sdk),
		RateLimit:  rate.Inf,
		RetryAfter: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: f, p: p, public: pub, private: priv}
}

// desired builds a desired load balancer whose nodes are EC2 instances the
// fake knows.
func (e *env) desired(key providers.Key, nodes []string, ports []providers.Port) *providers.LoadBalancer {
	d := providertest.DefaultDesired(key, nodes, ports)
	for i := range d.Nodes {
		d.Nodes[i].ProviderID = "aws:///" + e.fake.Region() + "a/" + e.fake.InstanceID(d.Nodes[i].Name)
	}
	return d
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		e := newEnv(t, envOptions{fake: awsfake.Options{Consistency: 20 * time.Millisecond, MaxPageSize: 2}})
		// The backend security group and the node rules are made once per
		// cluster; make them before the suite counts a Service's steps.
		ensureOK(t, e, e.desired(key("warm-up"), []string{"node-a", "node-b"}, []providers.Port{tcp(80, 30080)}))
		return &providertest.Harness{
			Provider:  e.p,
			ClusterID: testCluster,
			Resources: func() []providertest.Resource {
				var out []providertest.Resource
				for _, r := range e.fake.Resources() {
					out = append(out, providertest.Resource{Kind: r.Kind, ID: r.ID, Tags: r.Tags})
				}
				return out
			},
			MutatingCalls:   e.fake.MutatingCalls,
			InjectTransient: e.fake.InjectThrottle,
			CrashAfter:      e.fake.CrashAfter,
			Recover:         e.fake.Recover,
			Desired:         e.desired,
			PlantForeign: func(key providers.Key) {
				e.fake.PlantLoadBalancer(aws.LoadBalancerName(key), map[string]string{"owner": "someone-else"})
			},
			Settle: func() { e.fake.WaitSettled(t.Context()) },
		}
	})
}

// serviceResources lists the fake's resources but the cluster-wide backend
// security group, which belongs to no Service and outlives them all.
func serviceResources(f *awsfake.Fake) []awsfake.Resource {
	var out []awsfake.Resource
	for _, r := range f.Resources() {
		if r.Tags[aws.TagRole] != aws.RoleBackend {
			out = append(out, r)
		}
	}
	return out
}

// serviceSecurityGroups lists the security groups but the backend group.
func serviceSecurityGroups(f *awsfake.Fake) []awsfake.SecurityGroup {
	var out []awsfake.SecurityGroup
	for _, sg := range f.SecurityGroups() {
		if sg.Tags[aws.TagRole] != aws.RoleBackend {
			out = append(out, sg)
		}
	}
	return out
}

func key(name string) providers.Key {
	return providers.Key{ClusterID: testCluster, Namespace: "default", Name: name, UID: "uid-" + name}
}

// ensureOK runs Ensure, retrying RetryErrors as the controller would.
func ensureOK(t *testing.T, e *env, d *providers.LoadBalancer) *providers.Status {
	t.Helper()
	var err error
	for range 20 {
		var st *providers.Status
		if st, err = e.p.Ensure(t.Context(), d); err == nil {
			return st
		}
		if _, ok := providers.IsRetryable(err); !ok {
			break
		}
		e.fake.WaitSettled(t.Context())
	}
	t.Fatalf("Ensure(%s): %v", d.Key, err)
	return nil
}

func deleteOK(t *testing.T, e *env, k providers.Key) {
	t.Helper()
	var err error
	for range 20 {
		if err = e.p.Delete(t.Context(), k); err == nil {
			return
		}
		if _, ok := providers.IsRetryable(err); !ok {
			break
		}
		e.fake.WaitSettled(t.Context())
	}
	t.Fatalf("Delete(%s): %v", k, err)
}

func tcp(port, nodePort int32) providers.Port {
	return providertest.TCP(port, nodePort)
}

func udp(port, nodePort int32) providers.Port {
	return providers.Port{Name: fmt.Sprintf("udp-%d", port), Protocol: providers.UDP, Port: port, NodePort: nodePort, TargetPort: 5353}
}

func TestThrottlingIsRetryable(t *testing.T) {
	e := newEnv(t, envOptions{})
	d := e.desired(key("throttled"), []string{"n1"}, []providers.Port{tcp(80, 30080)})
	e.fake.SetThrottleRate(1)
	_, err := e.p.Ensure(t.Context(), d)
	after, ok := providers.IsRetryable(err)
	if !ok || after <= 0 {
		t.Fatalf("Ensure under constant throttling: got %v, want a RetryError with a delay", err)
	}
	e.fake.Recover()
	ensureOK(t, e, d)
}

func TestServerErrorsAndTimeoutsAreRetryable(t *testing.T) {
	t.Run("5xx", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		e.fake.InjectServerError(10)
		_, err := e.p.Ensure(t.Context(), e.desired(key("fivexx"), []string{"n1"}, []providers.Port{tcp(80, 30080)}))
		if _, ok := providers.IsRetryable(err); !ok {
			t.Fatalf("Ensure after repeated 500s: got %v, want RetryError", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		e := newEnv(t, envOptions{sdk: awsfake.SDKOptions{Timeout: 100 * time.Millisecond, MaxAttempts: 2}})
		e.fake.InjectSlow(2, time.Second)
		_, err := e.p.Ensure(t.Context(), e.desired(key("slow"), []string{"n1"}, []providers.Port{tcp(80, 30080)}))
		if _, ok := providers.IsRetryable(err); !ok {
			t.Fatalf("Ensure after timeouts: got %v, want RetryError", err)
		}
		e.fake.Recover()
		ensureOK(t, e, e.desired(key("slow"), []string{"n1"}, []providers.Port{tcp(80, 30080)}))
	})
}

func TestForeignResourcesAreNotOwned(t *testing.T) {
	t.Run("securityGroup", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		k := key("foreign-sg")
		id := e.fake.PlantSecurityGroup(aws.SecurityGroupName(k), awsfake.TestVPC, map[string]string{"team": "payments"})
		_, err := e.p.Ensure(t.Context(), e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)}))
		var no *providers.NotOwnedError
		if !errors.As(err, &no) || no.ID != id {
			t.Fatalf("Ensure with a foreign security group under our name: got %v, want NotOwnedError for %s", err, id)
		}
		deleteOK(t, e, k)
		if len(serviceSecurityGroups(e.fake)) != 1 {
			t.Fatalf("Delete touched the foreign security group: %+v", e.fake.SecurityGroups())
		}
	})
	t.Run("loadBalancerTagsOfAnotherService", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		k := key("other-owner")
		other := providers.OwnershipTags(key("someone-else"))
		e.fake.PlantLoadBalancer(aws.LoadBalancerName(k), other)
		_, err := e.p.Ensure(t.Context(), e.desired(k, []string{"n1"}, []providers.Port{tcp(80, 30080)}))
		var no *providers.NotOwnedError
		if !errors.As(err, &no) {
			t.Fatalf("Ensure with another Service's load balancer under our name: got %v, want NotOwnedError", err)
		}
		if _, err := e.p.Observe(t.Context(), k); !errors.Is(err, providers.ErrNotFound) {
			t.Fatalf("Observe of a load balancer we do not own: got %v, want ErrNotFound", err)
		}
		deleteOK(t, e, k)
		if _, ok := e.fake.LoadBalancerByName(aws.LoadBalancerName(k)); !ok {
			t.Fatal("Delete removed a load balancer owned by another Service")
		}
	})
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	cases := []struct {
		name   string
		mutate func(d *providers.LoadBalancer)
		reason string
	}{
		{"bad annotation", func(d *providers.LoadBalancer) { d.Annotations = map[string]string{aws.AnnotationCrossZone: "maybe"} }, "InvalidAnnotation"},
		{"unknown subnet", func(d *providers.LoadBalancer) {
			d.Annotations = map[string]string{aws.AnnotationSubnets: "subnet-0123456789abcdef0"}
		}, "InvalidSubnet"},
		{"unknown allocation", func(d *providers.LoadBalancer) {
			d.Annotations = map[string]string{aws.AnnotationSubnets: e.public[0], aws.AnnotationEIPAllocations: "eipalloc-0123456789abcdef0"}
		}, "InvalidEIPAllocation"},
		{"sctp", func(d *providers.LoadBalancer) { d.Ports[0].Protocol = providers.SCTP }, "UnsupportedProtocol"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.desired(key("cfg"), []string{"n1"}, []providers.Port{tcp(80, 30080)})
			tc.mutate(d)
			_, err := e.p.Ensure(t.Context(), d)
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("got %v, want ConfigError %s", err, tc.reason)
			}
		})
	}
}
