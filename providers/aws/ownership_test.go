package aws_test

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/providers/providertest"
)

// cluster is one cluster's provider on a fake account that other clusters
// share; its calls are signed with its own access key.
type cluster struct {
	id, key string
	p       *aws.Provider
}

func newCluster(t *testing.T, f *awsfake.Fake, id string, mutate ...func(*aws.Options)) *cluster {
	t.Helper()
	c := &cluster{id: id, key: "AKIA" + strings.ToUpper(strings.ReplaceAll(id, "-", ""))}
	o := aws.Options{
		ClusterID:  id,
		AWS:        f.SDKConfig(awsfake.SDKOptions{AccessKeyID: c.key}),
		RateLimit:  rate.Inf,
		RetryAfter: 10 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&o)
	}
	p, err := aws.New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	return c
}

// sharedSubnets seeds public subnets in one VPC that are tagged for both
// clusters, as subnets shared by two EKS clusters are.
func sharedSubnets(f *awsfake.Fake, clusters ...string) {
	for i, z := range []string{"a", "b"} {
		tags := map[string]string{aws.TagRoleELB: "1"}
		for _, c := range clusters {
			tags[aws.TagClusterPrefix+c] = "shared"
		}
		f.AddSubnet("subnet-2000000000000000"+string(rune('1'+i)), awsfake.TestVPC, f.Region()+z, tags)
	}
}

func (c *cluster) desired(f *awsfake.Fake, key providers.Key, nodes []string, ports ...providers.Port) *providers.LoadBalancer {
	d := providertest.DefaultDesired(key, nodes, ports)
	for i := range d.Nodes {
		d.Nodes[i].ProviderID = "aws:///" + f.Region() + "a/" + f.InstanceID(d.Nodes[i].Name)
	}
	return d
}

// TestTwoClustersOneAccount: two clusters in one account and region, each
// with its own cluster ID, serve a Service of the same namespace and name.
// Concurrent creates, updates and a delete in one cluster never make a
// mutating call on the other's resources (the fake's call log, signed per
// cluster, proves it), and the other's load balancer survives intact.
func TestTwoClustersOneAccount(t *testing.T) {
	f := awsfake.New(awsfake.Options{Consistency: 10 * time.Millisecond, MaxPageSize: 2})
	t.Cleanup(f.Close)
	alpha, bravo := providers.DeriveClusterID("uid-of-alpha-kube-system"), providers.DeriveClusterID("uid-of-bravo-kube-system")
	sharedSubnets(f, alpha, bravo)
	a, b := newCluster(t, f, alpha), newCluster(t, f, bravo)
	ctx := t.Context()

	both := func(step func(c *cluster) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []*cluster{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = eventually(func() error { return step(c) })
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	key := func(c *cluster) providers.Key {
		return providers.Key{ClusterID: c.id, Namespace: "default", Name: "web", UID: "uid-web-" + c.id}
	}
	// Create, then update ports and nodes, in both clusters at once.
	both(func(c *cluster) error {
		_, err := c.p.Ensure(ctx, c.desired(f, key(c), []string{c.id + "-n1"}, providertest.TCP(80, 30080)))
		return err
	})
	both(func(c *cluster) error {
		d := c.desired(f, key(c), []string{c.id + "-n1", c.id + "-n2"}, providertest.TCP(80, 30080), providertest.TCP(443, 30443))
		d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
		_, err := c.p.Ensure(ctx, d)
		return err
	})
	owned := func(id string) map[string]bool {
		out := map[string]bool{}
		for _, r := range serviceResources(f) {
			if r.Tags[providers.TagCluster] == id {
				out[r.ID] = true
			}
		}
		return out
	}
	bravoBefore, alphaBefore := owned(bravo), owned(alpha)
	if len(bravoBefore) == 0 || len(owned(alpha)) == 0 {
		t.Fatalf("each cluster should own resources: alpha %v, bravo %v", owned(alpha), bravoBefore)
	}
	// alpha deletes its Service while bravo re-ensures its own.
	var wg sync.WaitGroup
	var delErr, ensErr error
	wg.Add(2)
	go func() { defer wg.Done(); delErr = eventually(func() error { return a.p.Delete(ctx, key(a)) }) }()
	go func() {
		defer wg.Done()
		d := b.desired(f, key(b), []string{bravo + "-n1", bravo + "-n2"}, providertest.TCP(80, 30080), providertest.TCP(443, 30443))
		d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
		_, ensErr = b.p.Ensure(ctx, d)
	}()
	wg.Wait()
	if err := errors.Join(delErr, ensErr); err != nil {
		t.Fatal(err)
	}
	f.WaitSettled(ctx)
	_ = eventually(func() error { return a.p.Delete(ctx, key(a)) }) // security groups release lazily

	if left := owned(alpha); len(left) != 0 {
		t.Errorf("alpha deleted its Service but left %v", left)
	}
	after := owned(bravo)
	for id := range bravoBefore {
		if !after[id] {
			t.Errorf("bravo's %s is gone after alpha deleted its Service of the same name", id)
		}
	}
	if st, err := b.p.Observe(ctx, key(b)); err != nil || len(st.Ports) != 2 {
		t.Errorf("bravo's load balancer after alpha's delete: %+v, %v", st, err)
	}

	// The call log: no mutating call signed by one cluster names a resource
	// of the other.
	ids := map[string]map[string]bool{alpha: alphaBefore, bravo: bravoBefore}
	for id := range after {
		ids[bravo][id] = true
	}
	other := map[string]string{a.key: bravo, b.key: alpha}
	for _, c := range f.Calls() {
		if !c.Mutating {
			continue
		}
		victim, ok := other[c.AccessKeyID]
		if !ok {
			t.Fatalf("call %s by unknown key %q", c.Action, c.AccessKeyID)
		}
		for param, vs := range c.Params {
			for _, v := range vs {
				if ids[victim][v] {
					t.Errorf("%s by %s named %s's %s (%s)", c.Action, c.AccessKeyID, victim, v, param)
				}
			}
		}
	}
}

// eventually retries a step that the fake's eventual consistency may delay.
func eventually(f func() error) error {
	return providertest.RetryTransient(200, 10*time.Millisecond, f)
}

// TestSourceRangesFailClosedWithoutSecurityGroup: an NLB without a Portico
// security group cannot enforce loadBalancerSourceRanges (AWS adds security
// groups to an NLB only at creation). Ensure returns a ConfigError with
// reason SourceRangesNotEnforceable and makes no mutating call, instead of
// reporting Ready for a load balancer open to everyone.
func TestSourceRangesFailClosedWithoutSecurityGroup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(e *env, key providers.Key)
	}{
		{"no security group", func(e *env, key providers.Key) {
			e.fake.PlantLoadBalancer(aws.LoadBalancerName(key), providers.OwnershipTags(key))
		}},
		{"another tool's security group", func(e *env, key providers.Key) {
			sg := e.fake.PlantSecurityGroup("someone-elses", awsfake.TestVPC, map[string]string{"owner": "someone-else"})
			e.fake.PlantLoadBalancerWithSecurityGroups(aws.LoadBalancerName(key), providers.OwnershipTags(key), sg)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			key := providers.Key{ClusterID: testCluster, Namespace: "default", Name: "web"}
			tc.plant(e, key)
			d := e.desired(key, []string{"n1"}, []providers.Port{providertest.TCP(80, 30080)})
			d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
			before := e.fake.MutatingCalls()
			_, err := e.p.Ensure(t.Context(), d)
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != providers.ReasonSourceRangesNotEnforceable {
				t.Fatalf("Ensure = %v, want a ConfigError %s", err, providers.ReasonSourceRangesNotEnforceable)
			}
			if n := e.fake.MutatingCalls() - before; n != 0 {
				t.Errorf("%d mutating calls on a load balancer that cannot enforce the source ranges", n)
			}
			// Without source ranges the same load balancer is fine as it is.
			d.SourceRanges = nil
			if _, err := e.p.Ensure(t.Context(), d); err != nil {
				t.Errorf("without source ranges: %v", err)
			}
		})
	}
}

// TestSubnetAllowList: a Service may name only subnets tagged for its
// cluster unless --aws-allow-untagged-subnets; a subnet tagged for another
// cluster never. Refused subnets get a ConfigError and no mutating call.
func TestSubnetAllowList(t *testing.T) {
	const (
		untagged = "subnet-3000000000000000a"
		foreign  = "subnet-3000000000000000b"
		otherVPC = "subnet-3000000000000000c"
	)
	seed := func(f *awsfake.Fake) {
		f.AddSubnet(untagged, awsfake.TestVPC, f.Region()+"a", map[string]string{aws.TagRoleELB: "1"})
		f.AddSubnet(foreign, awsfake.TestVPC, f.Region()+"b", map[string]string{aws.TagRoleELB: "1", aws.TagClusterPrefix + "someone-else": "owned"})
		f.AddSubnet(otherVPC, "vpc-0ffffffffffffffff", f.Region()+"a", map[string]string{aws.TagRoleELB: "1"})
	}
	for _, tc := range []struct {
		name         string
		subnets      string
		allowUntaged bool
		wantReason   string
	}{
		{name: "tagged for this cluster", subnets: "public"},
		{name: "untagged", subnets: untagged, wantReason: providers.ReasonResourceNotAllowed},
		{name: "another cluster's", subnets: foreign, wantReason: providers.ReasonResourceNotAllowed},
		{name: "another cluster's, untagged allowed", subnets: foreign, allowUntaged: true, wantReason: providers.ReasonResourceNotAllowed},
		{name: "untagged allowed", subnets: untagged, allowUntaged: true},
		{name: "untagged allowed, other VPC", subnets: otherVPC, allowUntaged: true, wantReason: providers.ReasonResourceNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := awsfake.New(awsfake.Options{})
			t.Cleanup(f.Close)
			pub, _ := f.SeedNetwork(testCluster)
			seed(f)
			c := newCluster(t, f, testCluster, func(o *aws.Options) { o.AllowUntaggedSubnets = tc.allowUntaged })
			subnets := tc.subnets
			if subnets == "public" {
				subnets = pub[0]
			}
			key := providers.Key{ClusterID: testCluster, Namespace: "default", Name: "web"}
			d := c.desired(f, key, []string{"n1"}, providertest.TCP(80, 30080))
			d.Annotations = map[string]string{aws.AnnotationSubnets: subnets}
			_, err := c.p.Ensure(t.Context(), d)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("Ensure: %v", err)
				}
				return
			}
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != tc.wantReason {
				t.Fatalf("Ensure = %v, want a ConfigError %s", err, tc.wantReason)
			}
			if n := f.MutatingCalls(); n != 0 {
				t.Errorf("%d mutating calls for a refused subnet", n)
			}
		})
	}
}

// TestEIPAllowList: a Service may name only Elastic IPs tagged for its
// cluster unless --aws-allow-untagged-eips; one tagged for another cluster
// never. Refused allocations get a ConfigError and no mutating call.
func TestEIPAllowList(t *testing.T) {
	const (
		ours     = "eipalloc-0aaaaaaaaaaaaaaa1"
		untagged = "eipalloc-0aaaaaaaaaaaaaaa2"
		foreign  = "eipalloc-0aaaaaaaaaaaaaaa3"
	)
	for _, tc := range []struct {
		name          string
		eip           string
		allowUntagged bool
		wantReason    string
	}{
		{name: "tagged for this cluster", eip: ours},
		{name: "untagged", eip: untagged, wantReason: providers.ReasonResourceNotAllowed},
		{name: "untagged allowed", eip: untagged, allowUntagged: true},
		{name: "another cluster's", eip: foreign, allowUntagged: true, wantReason: providers.ReasonResourceNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := awsfake.New(awsfake.Options{})
			t.Cleanup(f.Close)
			pub, _ := f.SeedNetwork(testCluster)
			f.AddElasticIP(ours, "192.0.2.10", map[string]string{providers.TagCluster: testCluster})
			f.AddElasticIP(untagged, "192.0.2.11")
			f.AddElasticIP(foreign, "192.0.2.12", map[string]string{aws.TagClusterPrefix + "someone-else": "owned"})
			c := newCluster(t, f, testCluster, func(o *aws.Options) { o.AllowUntaggedEIPs = tc.allowUntagged })
			key := providers.Key{ClusterID: testCluster, Namespace: "default", Name: "web"}
			d := c.desired(f, key, []string{"n1"}, providertest.TCP(80, 30080))
			d.Annotations = map[string]string{aws.AnnotationSubnets: pub[0], aws.AnnotationEIPAllocations: tc.eip}
			_, err := c.p.Ensure(t.Context(), d)
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("Ensure: %v", err)
				}
				return
			}
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != tc.wantReason {
				t.Fatalf("Ensure = %v, want a ConfigError %s", err, tc.wantReason)
			}
			if n := f.MutatingCalls(); n != 0 {
				t.Errorf("%d mutating calls for a refused Elastic IP", n)
			}
		})
	}
}

// TestRefusedSubnetKeepsTheLoadBalancer: moving a Service's NLB to a subnet
// it may not use is refused before the NLB, whose subnets AWS cannot change,
// is deleted to be rebuilt.
func TestRefusedSubnetKeepsTheLoadBalancer(t *testing.T) {
	f := awsfake.New(awsfake.Options{})
	t.Cleanup(f.Close)
	pub, _ := f.SeedNetwork(testCluster)
	c := newCluster(t, f, testCluster)
	key := providers.Key{ClusterID: testCluster, Namespace: "default", Name: "web"}
	d := c.desired(f, key, []string{"n1"}, providertest.TCP(80, 30080))
	d.Annotations = map[string]string{aws.AnnotationSubnets: pub[0]}
	if _, err := c.p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	before := f.MutatingCalls()
	d.Annotations = map[string]string{aws.AnnotationSubnets: "subnet-0ff00000000000001"} // tagged for someone-else
	_, err := c.p.Ensure(t.Context(), d)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != providers.ReasonResourceNotAllowed {
		t.Fatalf("Ensure = %v, want a ConfigError %s", err, providers.ReasonResourceNotAllowed)
	}
	if n := f.MutatingCalls() - before; n != 0 {
		t.Errorf("%d mutating calls (the NLB was deleted to move it?)", n)
	}
	if _, ok := f.LoadBalancerByName(aws.LoadBalancerName(key)); !ok {
		t.Error("the load balancer is gone")
	}
}
