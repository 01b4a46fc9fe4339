package gcp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
	"github.com/portico-lb/portico/providers/providertest"
)

const (
	testProject = "portico-test"
	testRegion  = "us-central1"
	testCluster = "conformance"
)

// zones of the fake nodes: node-a, node-c, node-e in -a; node-b, node-d in -b.
var testNodes = []string{"node-a", "node-b", "node-c", "node-d", "node-e", "node-f", "node-g"}

func zoneOf(node string) string {
	if (node[len(node)-1]-'a')%2 == 0 {
		return testRegion + "-a"
	}
	return testRegion + "-b"
}

// env is a provider wired to a fake Compute API through the real REST clients.
type env struct {
	fake *gcpfake.Server
	p    *gcp.Provider
	api  *gcp.Clients
}

type envOptions struct {
	fake    gcpfake.Options
	tags    []string
	subnet  string
	cluster string
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	o.fake.Project, o.fake.Region = testProject, testRegion
	fake := gcpfake.New(o.fake)
	t.Cleanup(fake.Close)
	for _, n := range testNodes {
		fake.AddInstance(zoneOf(n), n)
	}
	api, err := gcp.NewClients(context.Background(), option.WithEndpoint(fake.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	if o.cluster == "" {
		o.cluster = testCluster
	}
	p, err := gcp.New(api, gcp.Options{
		ClusterID: o.cluster, Project: testProject, Region: testRegion, Network: "default",
		Subnetwork: o.subnet, NodeTags: o.tags, ExternalInstanceGroupsPrefix: gcp.DefaultExternalInstanceGroupsPrefix,
		Backoff: gcp.Backoff{Attempts: 8, Initial: time.Millisecond, Max: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: fake, p: p, api: api}
}

// desired builds a desired load balancer whose nodes are GCE instances of the fake.
func desired(key providers.Key, nodes []string, ports []providers.Port) *providers.LoadBalancer {
	d := providertest.DefaultDesired(key, nodes, ports)
	for i := range d.Nodes {
		d.Nodes[i].ProviderID = fmt.Sprintf("gce://%s/%s/%s", testProject, zoneOf(d.Nodes[i].Name), d.Nodes[i].Name)
		d.Nodes[i].Zone = zoneOf(d.Nodes[i].Name)
	}
	return d
}

func key(name string) providers.Key {
	return providers.Key{ClusterID: testCluster, Namespace: "default", Name: name, UID: "uid-" + name}
}

func (e *env) resources() []providertest.Resource {
	var out []providertest.Resource
	for _, r := range e.fake.Resources() {
		out = append(out, providertest.Resource{Kind: r.Kind, ID: r.ID, Tags: gcp.Marks(r.Description)})
	}
	return out
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		e := newEnv(t, envOptions{})
		// The cluster already serves one Service, as a cluster with
		// Portico running does: its instance groups exist. (They are
		// shared by every Service of the cluster, so only the first
		// Service creates them; TestSharedInstanceGroups covers that.)
		anchor := providers.Key{ClusterID: testCluster, Namespace: "kube-system", Name: "anchor"}
		if _, err := e.p.Ensure(t.Context(), desired(anchor, []string{"node-a", "node-b"}, []providers.Port{providertest.TCP(80, 30080)})); err != nil {
			t.Fatalf("ensuring the anchor Service: %v", err)
		}
		codes := []gcpfake.Fault{
			gcpfake.Throttle(1),
			{Code: 429, Reason: "rateLimitExceeded", Times: 1},
			{Code: 503, Reason: "backendError", Times: 1},
		}
		return &providertest.Harness{
			Provider:      e.p,
			ClusterID:     testCluster,
			Resources:     e.resources,
			MutatingCalls: e.fake.MutatingCalls,
			InjectTransient: func(n int) {
				for i := range n {
					e.fake.Inject(codes[i%len(codes)])
				}
			},
			CrashAfter: e.fake.CrashAfter,
			Recover:    e.fake.ClearFaults,
			Desired:    desired,
			PlantForeign: func(k providers.Key) {
				e.fake.Put("regions/"+testRegion+"/backendServices", gcpfake.Object{
					"name": gcp.BaseName(k), "description": "made by hand", "loadBalancingScheme": "EXTERNAL", "protocol": "TCP",
				})
			},
			Settle: e.fake.Settle,
		}
	})
}
