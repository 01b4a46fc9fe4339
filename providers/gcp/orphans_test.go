package gcp_test

import (
	"strings"
	"testing"

	"github.com/portico-lb/portico/providers"
)

// TestListOwned: the orphan scan's listing finds every resource whose
// description marks it as this cluster's, naming its Service, and the
// cluster's instance groups; a group no backend service uses any more (a
// Delete that stopped after its backend service went and was never retried)
// is Unreferenced, and DeleteOrphan removes it.
func TestListOwned(t *testing.T) {
	e := newEnv(t, envOptions{})
	nodes := []string{"node-a", "node-b"}
	for _, name := range []string{"web", "api"} {
		if _, err := e.p.Ensure(t.Context(), desired(key(name), nodes, ports(80))); err != nil {
			t.Fatal(err)
		}
	}
	e.fake.Settle()
	before := e.fake.MutatingCalls()
	owned, err := e.p.ListOwned(t.Context(), testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.fake.MutatingCalls() - before; n != 0 {
		t.Errorf("listing made %d mutating calls", n)
	}
	marked := 0
	for _, r := range e.fake.Resources() {
		if strings.Contains(r.Description, testCluster) {
			marked++
		}
	}
	kinds := map[string]int{}
	for _, o := range owned {
		kinds[o.Kind]++
		if o.Kind == "instanceGroup" {
			if o.Unreferenced {
				t.Errorf("instance group %s reported unreferenced while two Services use it", o.ID)
			}
			continue
		}
		if s := o.Service.String(); s != "default/web" && s != "default/api" {
			t.Errorf("%s %s names Service %q", o.Kind, o.ID, s)
		}
	}
	if len(owned) != marked || kinds["forwardingRule"] != 2 || kinds["backendService"] != 2 || kinds["instanceGroup"] == 0 {
		t.Fatalf("listed %d resources %v; the fake holds %d marked for the cluster", len(owned), kinds, marked)
	}
	if others, err := e.p.ListOwned(t.Context(), "another-cluster"); err != nil || len(others) != 0 {
		t.Errorf("another cluster's listing: %v %v", others, err)
	}

	if err := e.p.Delete(t.Context(), key("api")); err != nil {
		t.Fatal(err)
	}
	// web's Delete stops at every step in turn until its instance groups
	// are left unreferenced.
	var leaked []providers.Owned
	for n := 0; n < 30 && len(leaked) == 0; n++ {
		e.fake.CrashAfter(n)
		err := e.p.Delete(t.Context(), key("web"))
		e.fake.ClearFaults()
		e.fake.Settle()
		if err == nil {
			break
		}
		now, err := e.p.ListOwned(t.Context(), testCluster)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range now {
			if o.Kind == "instanceGroup" && o.Unreferenced {
				leaked = append(leaked, o)
			}
		}
	}
	if len(leaked) == 0 {
		t.Fatal("no interrupted Delete left an unreferenced instance group")
	}
	for _, o := range leaked {
		if err := e.p.DeleteOrphan(t.Context(), testCluster, o); err != nil {
			t.Fatalf("DeleteOrphan(%s): %v", o.ID, err)
		}
	}
	e.fake.Settle()
	after, err := e.p.ListOwned(t.Context(), testCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range after {
		if o.Kind == "instanceGroup" {
			t.Errorf("instance group %s survived DeleteOrphan", o.ID)
		}
	}
}
