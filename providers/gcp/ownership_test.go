package gcp_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
	"github.com/portico-lb/portico/providers/providertest"
)

// clusterProvider is one cluster's provider on fake, in the shared project,
// calling with its own user agent, which the fake records per call.
func clusterProvider(t *testing.T, fake *gcpfake.Server, id string, mutate ...func(*gcp.Options)) *gcp.Provider {
	t.Helper()
	api, err := gcp.NewClients(context.Background(), option.WithEndpoint(fake.URL()), option.WithoutAuthentication(), option.WithUserAgent("portico-"+id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	o := gcp.Options{
		ClusterID: id, Project: testProject, Region: testRegion, Network: "default",
		Backoff: gcp.Backoff{Attempts: 8, Initial: time.Millisecond, Max: 10 * time.Millisecond},
	}
	for _, m := range mutate {
		m(&o)
	}
	p, err := gcp.New(api, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func retrying(f func() error) error { return providertest.RetryTransient(100, 5*time.Millisecond, f) }

// TestTwoClustersOneProject: two clusters with their own cluster IDs in one
// project serve a Service of the same namespace and name, on their own
// nodes. Concurrent creates, updates and a delete never make a mutating call
// on the other's instance groups, global firewall rules or per-Service
// resources (the fake's call log, per user agent, proves it), and after
// alpha deletes its Service bravo's load balancer and instance groups keep
// bravo's nodes.
func TestTwoClustersOneProject(t *testing.T) {
	fake := gcpfake.New(gcpfake.Options{Project: testProject, Region: testRegion})
	t.Cleanup(fake.Close)
	alpha, bravo := providers.DeriveClusterID("alpha-kube-system-uid"), providers.DeriveClusterID("bravo-kube-system-uid")
	nodes := map[string][]string{alpha: {"alpha-a", "alpha-b"}, bravo: {"bravo-a", "bravo-b"}}
	for _, ns := range nodes {
		for _, n := range ns {
			fake.AddInstance(zoneOf(n), n)
		}
	}
	ps := map[string]*gcp.Provider{alpha: clusterProvider(t, fake, alpha), bravo: clusterProvider(t, fake, bravo)}
	k := func(id string) providers.Key {
		return providers.Key{ClusterID: id, Namespace: "default", Name: "web", UID: "uid-web-" + id}
	}
	ctx := t.Context()
	both := func(step func(id string) error) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for id := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := retrying(func() error { return step(id) }); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	both(func(id string) error {
		_, err := ps[id].Ensure(ctx, desired(k(id), nodes[id][:1], []providers.Port{providertest.TCP(80, 30080)}))
		return err
	})
	both(func(id string) error {
		_, err := ps[id].Ensure(ctx, desired(k(id), nodes[id], []providers.Port{providertest.TCP(80, 30080), providertest.TCP(443, 30443)}))
		return err
	})
	before, err := ps[bravo].Observe(ctx, k(bravo))
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var delErr, ensErr error
	wg.Add(2)
	go func() { defer wg.Done(); delErr = retrying(func() error { return ps[alpha].Delete(ctx, k(alpha)) }) }()
	go func() {
		defer wg.Done()
		ensErr = retrying(func() error {
			_, err := ps[bravo].Ensure(ctx, desired(k(bravo), nodes[bravo], []providers.Port{providertest.TCP(80, 30080), providertest.TCP(443, 30443)}))
			return err
		})
	}()
	wg.Wait()
	if err := errors.Join(delErr, ensErr); err != nil {
		t.Fatal(err)
	}

	after, err := ps[bravo].Observe(ctx, k(bravo))
	if err != nil || len(after.Ingress) == 0 || after.Ingress[0].IP != before.Ingress[0].IP || after.Backends.Total != 2 {
		t.Fatalf("bravo's load balancer after alpha's delete: %+v, %v (was %+v)", after, err, before)
	}
	if _, err := ps[alpha].Observe(ctx, k(alpha)); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("alpha's load balancer after its delete: %v", err)
	}
	for _, r := range fake.Resources() {
		if strings.Contains(r.ID, gcp.BaseName(k(alpha))) {
			t.Errorf("alpha deleted its Service but left %s", r.ID)
		}
	}

	// The call log: no mutating call by one cluster addresses the other's
	// instance groups or per-Service resources.
	names := map[string][]string{}
	for id := range ps {
		names[id] = []string{gcp.BaseName(k(id)), gcp.InstanceGroupName(id)}
	}
	other := map[string]string{alpha: bravo, bravo: alpha}
	for _, c := range fake.Calls() {
		if !c.Mutating {
			continue
		}
		caller := ""
		for id := range ps {
			if strings.Contains(c.UserAgent, "portico-"+id) {
				caller = id
			}
		}
		if caller == "" {
			t.Fatalf("call %s %s by unknown agent %q", c.Method, c.Path, c.UserAgent)
		}
		for _, n := range names[other[caller]] {
			if strings.Contains(c.Path, "/"+n) {
				t.Errorf("%s %s by %s addresses %s's %s", c.Method, c.Path, caller, other[caller], n)
			}
		}
	}
}

// TestSubnetProjectAllowList: a Service may name a subnetwork only in the
// operator's project or one in --gcp-allowed-projects; anything else is a
// ResourceNotAllowed ConfigError and nothing is created.
func TestSubnetProjectAllowList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subnet  string
		allowed []string
		ok      bool
	}{
		{name: "by name", subnet: "internal", ok: true},
		{name: "own project", subnet: "projects/" + testProject + "/regions/" + testRegion + "/subnetworks/internal", ok: true},
		{name: "another project", subnet: "projects/other-team-prj/regions/" + testRegion + "/subnetworks/internal"},
		{name: "allowed host project", subnet: "projects/shared-vpc-host/regions/" + testRegion + "/subnetworks/internal", allowed: []string{"shared-vpc-host"}, ok: true},
		{name: "not the allowed one", subnet: "projects/other-team-prj/regions/" + testRegion + "/subnetworks/internal", allowed: []string{"shared-vpc-host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := gcpfake.New(gcpfake.Options{Project: testProject, Region: testRegion})
			t.Cleanup(fake.Close)
			fake.AddInstance(zoneOf("node-a"), "node-a")
			p := clusterProvider(t, fake, testCluster, func(o *gcp.Options) { o.AllowedProjects = tc.allowed })
			d := desired(key("web"), []string{"node-a"}, []providers.Port{providertest.TCP(80, 30080)})
			d.Scheme = providers.SchemeInternal
			d.Annotations = map[string]string{gcp.AnnotationSubnet: tc.subnet}
			_, err := p.Ensure(t.Context(), d)
			var ce *providers.ConfigError
			if tc.ok {
				if errors.As(err, &ce) && ce.Reason == providers.ReasonResourceNotAllowed {
					t.Fatalf("Ensure refused an allowed subnetwork: %v", err)
				}
				return
			}
			if !errors.As(err, &ce) || ce.Reason != providers.ReasonResourceNotAllowed {
				t.Fatalf("Ensure = %v, want ConfigError %s", err, providers.ReasonResourceNotAllowed)
			}
			if n := fake.MutatingCalls(); n != 0 {
				t.Errorf("%d mutating calls for a subnetwork outside the allowed projects", n)
			}
		})
	}
}

// TestSameClusterIDOtherRegion: firewall rules are global, so a cluster
// given the same explicit --cluster-id in another region of the project
// computes the same firewall names. A rule marked for another region is
// never adopted, rewritten or deleted: Ensure stops with NotOwnedError before
// any change, and Delete leaves it.
func TestSameClusterIDOtherRegion(t *testing.T) {
	fake := gcpfake.New(gcpfake.Options{Project: testProject, Region: testRegion})
	t.Cleanup(fake.Close)
	fake.AddInstance(zoneOf("node-a"), "node-a")
	p := clusterProvider(t, fake, "prod")
	k := providers.Key{ClusterID: "prod", Namespace: "default", Name: "web"}
	desc := `{"portico.dev/cluster":"prod","portico.dev/managed-by":"portico","portico.dev/service":"default/web","portico.dev/region":"europe-west1"}`
	fake.Put("global/firewalls", gcpfake.Object{"name": gcp.BaseName(k), "description": desc, "network": "projects/" + testProject + "/global/networks/default",
		"direction": "INGRESS", "sourceRanges": []any{"0.0.0.0/0"}, "destinationRanges": []any{"198.51.100.7/32"}})
	_, err := p.Ensure(t.Context(), desired(k, []string{"node-a"}, []providers.Port{providertest.TCP(80, 30080)}))
	var no *providers.NotOwnedError
	if !errors.As(err, &no) {
		t.Fatalf("Ensure = %v, want NotOwnedError for europe-west1's firewall rule", err)
	}
	if n := fake.MutatingCalls(); n != 0 {
		t.Errorf("%d mutating calls", n)
	}
	if err := retrying(func() error { return p.Delete(t.Context(), k) }); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range fake.Resources() {
		found = found || r.ID == "global/firewalls/"+gcp.BaseName(k)
	}
	if !found {
		t.Error("Delete removed another region's firewall rule")
	}
}

// TestSourceRangesDenyEveryoneElse evaluates the project's firewall as GCP
// does: with loadBalancerSourceRanges set, a client outside them is denied
// even where another rule of the network (here default-allow-internal, as
// auto-mode networks have) admits it, while clients in the ranges and the
// health checks still get through; removing the ranges removes the deny rule.
func TestSourceRangesDenyEveryoneElse(t *testing.T) {
	e := newEnv(t, envOptions{subnet: "nodes"})
	e.fake.Put("global/firewalls", gcpfake.Object{"name": "default-allow-internal", "network": "projects/" + testProject + "/global/networks/default",
		"direction": "INGRESS", "priority": 65534, "sourceRanges": []any{"10.128.0.0/9"},
		"allowed": []any{map[string]any{"IPProtocol": "all"}}})
	k := key("ranged")
	d := desired(k, []string{"node-a"}, []providers.Port{providertest.TCP(80, 30080)})
	d.Scheme = providers.SchemeInternal
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}
	var st *providers.Status
	if err := retrying(func() (err error) { st, err = e.p.Ensure(t.Context(), d); return err }); err != nil {
		t.Fatal(err)
	}
	lb := st.Ingress[0].IP
	flow := func(src string, port int32) gcpfake.Packet {
		return gcpfake.Packet{Source: netip.MustParseAddr(src), Destination: lb, Protocol: "tcp", Port: port}
	}
	for _, tc := range []struct {
		name string
		pkt  gcpfake.Packet
		want bool
	}{
		{"client in the ranges", flow("10.9.1.1", 80), true},
		{"VPC client outside the ranges", flow("10.130.0.5", 80), false},
		{"health check", flow("35.191.0.1", 10256), true},
	} {
		if got, rule := e.fake.EvaluateIngress(tc.pkt); got != tc.want {
			t.Errorf("%s: admitted=%v by %q, want %v", tc.name, got, rule, tc.want)
		}
	}
	d.SourceRanges = nil
	if err := retrying(func() error { _, err := e.p.Ensure(t.Context(), d); return err }); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.fake.Resources() {
		if r.ID == "global/firewalls/"+gcp.DenyFirewallName(k) {
			t.Error("the deny rule is left after the ranges were removed")
		}
	}
	if got, rule := e.fake.EvaluateIngress(flow("10.130.0.5", 80)); !got {
		t.Errorf("without ranges a VPC client is refused by %q", rule)
	}
}
