package azure

import (
	"context"
	"strings"
	"testing"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/providertest"
)

// TestListOwned: the orphan scan's listing finds a Service's public IP (by
// its tags, naming the Service), its frontend on the shared load balancer
// and its NSG rules (by fingerprint when the description holds only the
// hashed service mark); DeleteOrphan removes an orphaned frontend and rule
// through the ownership checks and leaves other Services' parts alone.
func TestListOwned(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	long := providers.Key{ClusterID: testCluster, Namespace: strings.Repeat("n", 60), Name: strings.Repeat("s", 60)}
	ensure(t, e.p, desired("web"))
	ensure(t, e.p, providertest.DefaultDesired(long, []string{"node-a"}, []providers.Port{providertest.TCP(81, 30081)}))
	before := e.srv.Faults().MutatingCalls()
	owned, err := e.p.ListOwned(ctx, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Faults().MutatingCalls() - before; n != 0 {
		t.Errorf("listing made %d mutating calls", n)
	}
	byKind := map[string][]providers.Owned{}
	for _, o := range owned {
		byKind[o.Kind] = append(byKind[o.Kind], o)
		// Every entry names its Service or a fingerprint of a live one.
		if o.Service.Name == "" && o.Fingerprint != e.p.Fingerprint(key("web")) && o.Fingerprint != e.p.Fingerprint(long) {
			t.Errorf("%s %s: neither Service nor a known fingerprint (%q)", o.Kind, o.ID, o.Fingerprint)
		}
	}
	if len(byKind[kindPublicIP]) != 2 || len(byKind[kindFrontend]) != 2 || len(byKind[kindSecurityRule]) == 0 {
		t.Fatalf("listed %v", byKind)
	}
	for _, o := range byKind[kindPublicIP] {
		if o.Service.String() != "default/web" && o.Service != long {
			t.Errorf("public IP %s names Service %v", o.ID, o.Service)
		}
	}
	hashed := false
	for _, o := range byKind[kindSecurityRule] {
		hashed = hashed || (o.Service.Name == "" && o.Fingerprint == e.p.Fingerprint(long))
	}
	if !hashed {
		t.Errorf("the long-named Service's rules were not listed by fingerprint: %v", byKind[kindSecurityRule])
	}
	if others, _ := e.p.ListOwned(ctx, "another-cluster"); len(others) != 0 {
		t.Errorf("another cluster's listing found %v", others)
	}

	// The long-named Service's frontend and rules are orphaned.
	for _, o := range append(byKind[kindFrontend], byKind[kindSecurityRule]...) {
		if o.Fingerprint != e.p.Fingerprint(long) {
			continue
		}
		if err := e.p.DeleteOrphan(ctx, testCluster, o); err != nil {
			t.Fatalf("DeleteOrphan(%s %s): %v", o.Kind, o.ID, err)
		}
	}
	after, err := e.p.ListOwned(ctx, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range after {
		if o.Kind != kindPublicIP && o.Fingerprint == e.p.Fingerprint(long) {
			t.Errorf("%s %s survived DeleteOrphan", o.Kind, o.ID)
		}
	}
	if _, err := e.p.Observe(ctx, key("web")); err != nil {
		t.Errorf("the other Service's load balancer: %v", err)
	}
	if err := e.p.DeleteOrphan(ctx, "another-cluster", byKind[kindFrontend][0]); err == nil {
		t.Error("DeleteOrphan accepted another cluster's ID")
	}
}
