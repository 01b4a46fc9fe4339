package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/azure"
	"github.com/portico-lb/portico/providers/azure/azurefake"
	"github.com/portico-lb/portico/providers/providertest"
)

const (
	sub = "00000000-0000-0000-0000-0000000000e2"
	rg  = "e2e-rg"
	nsg = "e2e-nsg"
)

type token struct{}

func (token) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func clientOptions(srv *azurefake.Server) *arm.ClientOptions {
	cfg, err := azure.CloudConfiguration("AzurePublic", srv.URL())
	if err != nil {
		panic(err)
	}
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cfg, Transport: srv.Client(),
		Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond},
	}}
}

func provider(t *testing.T, srv *azurefake.Server, cluster string) *azure.Provider {
	t.Helper()
	p, err := azure.New(azure.Options{
		ClusterID: cluster, SubscriptionID: sub, ResourceGroup: rg, Location: "westeurope",
		VNetName: "vnet", SubnetName: "subnet", SecurityGroupName: nsg,
		PollInterval: time.Millisecond, Credential: token{}, ClientOptions: clientOptions(srv),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func lb(cluster, name string) *providers.LoadBalancer {
	d := providertest.DefaultDesired(providers.Key{ClusterID: cluster, Namespace: "e2e", Name: name}, []string{"node-a"}, []providers.Port{providertest.TCP(80, 30080)})
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	return d
}

// The checker finds what a run left (public IP, load balancer, NSG rules),
// ignores another cluster's resources and someone else's, and finds nothing
// once the run deleted its Services.
func TestLeftovers(t *testing.T) {
	srv := azurefake.New(azurefake.Options{PageSize: 2})
	t.Cleanup(srv.Close)
	srv.AddSecurityGroup(sub, rg, nsg)
	srv.AddPublicIP(sub, rg, "users", map[string]string{"owner": "someone"})
	run, other := provider(t, srv, "e2e-run"), provider(t, srv, "e2e-other")
	ctx := context.Background()
	for _, step := range []struct {
		p *azure.Provider
		d *providers.LoadBalancer
	}{{run, lb("e2e-run", "a")}, {run, internalLB("e2e-run", "b")}, {other, lb("e2e-other", "a")}} {
		if _, err := step.p.Ensure(ctx, step.d); err != nil {
			t.Fatal(err)
		}
	}
	f, err := armnetwork.NewClientFactory(sub, token{}, clientOptions(srv))
	if err != nil {
		t.Fatal(err)
	}
	scope := Scope{ResourceGroup: rg, SecurityGroup: nsg}
	left, err := Leftovers(ctx, f, scope, "e2e-run")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, l := range left {
		kinds[l.Kind]++
		if strings.Contains(l.ID, "e2e-other") || strings.HasSuffix(l.ID, "/users") {
			t.Errorf("%s is not the run's", l.ID)
		}
	}
	// a: public IP + allow/probe/deny rules; b: allow/probe/deny rules;
	// the shared public and internal load balancers.
	if kinds["publicIPAddress"] != 1 || kinds["loadBalancer"] != 2 || kinds["securityRule"] != 6 {
		t.Errorf("leftovers %v, want 1 public IP, 2 load balancers, 6 security rules", kinds)
	}
	for _, name := range []string{"a", "b"} {
		if err := run.Delete(ctx, providers.Key{ClusterID: "e2e-run", Namespace: "e2e", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	srv.Settle()
	if left, err := Leftovers(ctx, f, scope, "e2e-run"); err != nil || len(left) != 0 {
		t.Errorf("after Delete: %v, %v", left, err)
	}
	if left, _ := Leftovers(ctx, f, scope, "e2e-other"); len(left) == 0 {
		t.Error("the other cluster's resources vanished from the listing")
	}
}

func internalLB(cluster, name string) *providers.LoadBalancer {
	d := lb(cluster, name)
	d.Scheme = providers.SchemeInternal
	return d
}

func TestParseNodes(t *testing.T) {
	got, err := parseNodes("vm-1=10.0.0.4, vm-2=10.0.0.5")
	if err != nil || len(got) != 2 || got[1].Name != "vm-2" || got[1].InternalIPs[0] != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"", "vm-1", "=10.0.0.4", "vm-1=x", "vm-1=fd00::1", "vm-1=10.0.0.4,"} {
		if _, err := parseNodes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
