package gcp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/gcpfake"
)

// TestSharedVPCFirewallsInHostProject: in a Shared VPC the network and its
// firewall rules belong to the host project; a service project cannot create
// firewall rules for it. Portico creates them in --gcp-network-project (or
// the project of a network given as a link), and deletes them from there.
func TestSharedVPCFirewallsInHostProject(t *testing.T) {
	for _, tc := range []struct {
		name           string
		network        string
		networkProject string
	}{
		{"flag", "shared", "host-project"},
		{"network link", "projects/host-project/global/networks/shared", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := gcpfake.New(gcpfake.Options{Project: testProject, Region: testRegion, HostProject: "host-project"})
			t.Cleanup(fake.Close)
			for _, n := range testNodes {
				fake.AddInstance(zoneOf(n), n)
			}
			api, err := gcp.NewClients(context.Background(), option.WithEndpoint(fake.URL()), option.WithoutAuthentication())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = api.Close() })
			p, err := gcp.New(api, gcp.Options{ClusterID: testCluster, Project: testProject, Region: testRegion,
				Network: tc.network, NetworkProject: tc.networkProject,
				Backoff: gcp.Backoff{Attempts: 3, Initial: time.Millisecond, Max: time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			k := key("shared-vpc")
			st, err := p.Ensure(t.Context(), desired(k, []string{"node-a", "node-b"}, ports(80)))
			if err != nil {
				t.Fatalf("Ensure in a Shared VPC service project: %v", err)
			}
			fws := 0
			for _, r := range fake.Resources() {
				if r.Kind == "firewalls" {
					fws++
					if !strings.HasPrefix(r.ID, "projects/host-project/global/firewalls/") {
						t.Errorf("firewall %s is not in the host project", r.ID)
					}
				}
			}
			if fws != 2 {
				t.Errorf("%d firewall rules, want 2", fws)
			}
			for _, res := range st.Resources {
				if res.Kind == "firewall" && !strings.HasPrefix(res.ID, "projects/host-project/") {
					t.Errorf("status names firewall %s outside the host project", res.ID)
				}
			}
			if err := p.Delete(t.Context(), k); err != nil {
				t.Fatal(err)
			}
			if rs := fake.Resources(); len(rs) != 0 {
				t.Errorf("Delete left %d resources: %v", len(rs), rs[0].ID)
			}
		})
	}
}
