package aws_test

import (
	"sort"
	"testing"
	"time"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/aws/awsfake"
	"github.com/portico-lb/portico/providers/providertest"
)

// TestListOwned: the orphan scan's listing returns exactly the NLBs, target
// groups and security groups tagged for this cluster, each with the Service
// its marks name, across pages, and changes nothing; another cluster's
// resources in the same account are never listed, nor the cluster's shared
// backend security group.
func TestListOwned(t *testing.T) {
	f := awsfake.New(awsfake.Options{MaxPageSize: 2})
	t.Cleanup(f.Close)
	alpha, bravo := providers.DeriveClusterID("alpha-uid"), providers.DeriveClusterID("bravo-uid")
	sharedSubnets(f, alpha, bravo)
	a, b := newCluster(t, f, alpha), newCluster(t, f, bravo)
	ctx := t.Context()
	for _, c := range []*cluster{a, b} {
		for _, name := range []string{"web", "api"} {
			if c == b && name == "api" {
				continue
			}
			key := providers.Key{ClusterID: c.id, Namespace: "shop", Name: name}
			if err := eventually(func() error {
				_, err := c.p.Ensure(ctx, c.desired(f, key, []string{"n1"}, providertest.TCP(80, 30080)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(20 * time.Millisecond)
	want := map[string]string{}
	for _, r := range f.Resources() {
		// The cluster's shared backend security group names no Service: it
		// is never an orphan and never deleted by Portico.
		if r.Tags[providers.TagCluster] == alpha && r.Kind != "listener" && r.Tags[providers.TagService] != "" {
			want[r.ID] = r.Tags[providers.TagService]
		}
	}
	before := f.MutatingCalls()
	owned, err := a.p.ListOwned(ctx, alpha)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	kinds := map[string]int{}
	for _, o := range owned {
		got[o.ID] = o.Service.String()
		kinds[o.Kind]++
		if o.Service.ClusterID != alpha {
			t.Errorf("%s listed with cluster %q", o.ID, o.Service.ClusterID)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d resources %v, want %d %v", len(got), keys(got), len(want), keys(want))
	}
	for id, svc := range want {
		if got[id] != svc {
			t.Errorf("%s: service %q, want %q", id, got[id], svc)
		}
	}
	if kinds["loadBalancer"] != 2 || kinds["targetGroup"] != 2 || kinds["securityGroup"] != 2 {
		t.Errorf("kinds %v, want 2 load balancers, 2 target groups, 2 security groups", kinds)
	}
	if n := f.MutatingCalls() - before; n != 0 {
		t.Errorf("listing made %d mutating calls", n)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
