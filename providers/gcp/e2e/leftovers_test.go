package gcpe2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/e2e"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
	"github.com/portico-lb/portico/providers/providertest"
)

func TestLeftoversMatchOnlyTheRunsMarks(t *testing.T) {
	mine := `{"portico.dev/cluster":"e2e-1","portico.dev/managed-by":"portico","portico.dev/service":"e2e/web"}`
	rs := []gcpe2e.Resource{
		{Kind: "backendServices", Name: "a", Description: mine},
		{Kind: "addresses", Name: "b", Labels: map[string]string{"portico-cluster": "e2e-1", "portico-managed-by": "portico"}},
		{Kind: "firewalls", Name: "c", Description: `{"portico.dev/cluster":"e2e-2","portico.dev/managed-by":"portico"}`},
		{Kind: "healthChecks", Name: "d", Description: `{"portico.dev/cluster":"e2e-1"}`}, // no managed-by
		{Kind: "addresses", Name: "e", Labels: map[string]string{"portico-cluster": "e2e-1"}},
		{Kind: "instanceGroups", Name: "z/f", Description: "not json"},
	}
	got := gcpe2e.Leftovers(rs, "e2e-1")
	if fmt.Sprint(got) != "[addresses/b backendServices/a]" {
		t.Errorf("leftovers %v, want [addresses/b backendServices/a]", got)
	}
}

// TestListFindsEverythingTheBackendMakes runs the backend against the fake:
// List and Leftovers find every kind it creates, and nothing after Delete.
func TestListFindsEverythingTheBackendMakes(t *testing.T) {
	const project, region, cluster = "p", "us-central1", "e2e-list"
	fake := gcpfake.New(gcpfake.Options{Project: project, Region: region})
	defer fake.Close()
	fake.AddInstance(region+"-a", "vm-1")
	opts := []option.ClientOption{option.WithEndpoint(fake.URL()), option.WithoutAuthentication()}
	api, err := gcp.NewClients(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	p, err := gcp.New(api, gcp.Options{ClusterID: cluster, Project: project, Region: region, Network: "default",
		Backoff: gcp.Backoff{Attempts: 2, Initial: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	k := providers.Key{ClusterID: cluster, Namespace: "e2e", Name: "web"}
	d := providertest.DefaultDesired(k, []string{"vm-1"}, []providers.Port{providertest.TCP(80, 30080)})
	d.Nodes[0].ProviderID = "gce://" + project + "/" + region + "-a/vm-1"
	if _, err := p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	fake.Put("regions/"+region+"/healthChecks", gcpfake.Object{"name": "someone-elses", "description": `{"portico.dev/cluster":"other","portico.dev/managed-by":"portico"}`})
	w := gcpe2e.Where{Project: project, Region: region}
	rs, err := gcpe2e.List(t.Context(), w, opts...)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range gcpe2e.Leftovers(rs, cluster) {
		kinds[r.Kind]++
	}
	want := map[string]int{"addresses": 1, "forwardingRules": 1, "backendServices": 1, "healthChecks": 1, "firewalls": 2, "instanceGroups": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("leftovers by kind %v, want %v", kinds, want)
	}
	if err := p.Delete(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	rs, err = gcpe2e.List(t.Context(), w, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if left := gcpe2e.Leftovers(rs, cluster); len(left) != 0 {
		t.Errorf("after Delete: %v", left)
	}
	if len(rs) != 1 {
		t.Errorf("listed %v, want only the other cluster's health check", rs)
	}
}
