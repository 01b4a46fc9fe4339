package azurefake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers/azure/azurefake"
)

const (
	sub = "11111111-1111-1111-1111-111111111111"
	rg  = "rg"
)

type cred struct{}

func (cred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func clients(t *testing.T, opts azurefake.Options) (*azurefake.Server, *armnetwork.ClientFactory) {
	t.Helper()
	srv := azurefake.New(opts)
	t.Cleanup(srv.Close)
	f, err := armnetwork.NewClientFactory(sub, cred{}, &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: srv.URL(), Audience: "https://management.core.windows.net/"},
		}},
		Transport: srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, f
}

var poll = &runtime.PollUntilDoneOptions{Frequency: time.Millisecond}

func status(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

func code(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func ifMatch(etag string) context.Context {
	return policy.WithHTTPHeader(context.Background(), http.Header{"If-Match": {etag}})
}

func publicIP(t *testing.T, f *armnetwork.ClientFactory, name string) *armnetwork.PublicIPAddress {
	t.Helper()
	p, err := f.NewPublicIPAddressesClient().BeginCreateOrUpdate(context.Background(), rg, name, armnetwork.PublicIPAddress{
		Location: to("westeurope"), Tags: map[string]*string{"a": to("1")},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: to(armnetwork.IPAllocationMethodStatic)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.PollUntilDone(context.Background(), poll)
	if err != nil {
		t.Fatal(err)
	}
	return &out.PublicIPAddress
}

func lbWithFrontend(pipID string) armnetwork.LoadBalancer {
	return armnetwork.LoadBalancer{Location: to("westeurope"), Properties: &armnetwork.LoadBalancerPropertiesFormat{
		FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: to("fe"), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{
			PublicIPAddress: &armnetwork.PublicIPAddress{ID: to(pipID)},
		}}},
	}}
}

func TestETagsAndLongRunningOperations(t *testing.T) {
	srv, f := clients(t, azurefake.Options{OperationLatency: 30 * time.Millisecond})
	ctx := context.Background()
	lbs := f.NewLoadBalancersClient()
	if _, err := lbs.Get(ctx, rg, "lb", nil); status(err) != http.StatusNotFound || code(err) != "ResourceNotFound" {
		t.Fatalf("GET of a missing load balancer: %v", err)
	}
	pip := publicIP(t, f, "pip")
	if deref(pip.Properties.IPAddress) == "" {
		t.Fatal("public IP got no address")
	}

	poller, err := lbs.BeginCreateOrUpdate(ctx, rg, "lb", lbWithFrontend(*pip.ID), nil)
	if err != nil {
		t.Fatal(err)
	}
	// While the operation runs, another write conflicts.
	if _, err := lbs.BeginCreateOrUpdate(ctx, rg, "lb", lbWithFrontend(*pip.ID), nil); status(err) != http.StatusConflict || code(err) != "AnotherOperationInProgress" {
		t.Fatalf("write during an operation: %v, want 409 AnotherOperationInProgress", err)
	}
	created, err := poller.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	if got := deref(created.Properties.ProvisioningState); got != armnetwork.ProvisioningStateSucceeded {
		t.Errorf("after polling provisioningState = %s", got)
	}
	etag := deref(created.Etag)

	// The public IP shows its user and cannot be deleted.
	got, _ := f.NewPublicIPAddressesClient().Get(ctx, rg, "pip", nil)
	if got.Properties.IPConfiguration == nil {
		t.Error("public IP does not show the frontend using it")
	}
	if _, err := f.NewPublicIPAddressesClient().BeginDelete(ctx, rg, "pip", nil); code(err) != "PublicIPAddressCannotBeDeleted" {
		t.Errorf("delete of a used public IP: %v", err)
	}

	// Create-only on an existing resource, and a stale ETag, fail with 412.
	createOnly := policy.WithHTTPHeader(ctx, http.Header{"If-None-Match": {"*"}})
	if _, err := lbs.BeginCreateOrUpdate(createOnly, rg, "lb", lbWithFrontend(*pip.ID), nil); status(err) != http.StatusPreconditionFailed {
		t.Errorf("If-None-Match * on an existing load balancer: %v, want 412", err)
	}
	p2, err := lbs.BeginCreateOrUpdate(ifMatch(etag), rg, "lb", lbWithFrontend(*pip.ID), nil)
	if err != nil {
		t.Fatalf("write with the current ETag: %v", err)
	}
	if _, err := p2.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if _, err := lbs.BeginCreateOrUpdate(ifMatch(etag), rg, "lb", lbWithFrontend(*pip.ID), nil); status(err) != http.StatusPreconditionFailed {
		t.Errorf("write with a stale ETag: %v, want 412", err)
	}
	if srv.Stats().PreconditionFailed != 2 {
		t.Errorf("PreconditionFailed = %d, want 2", srv.Stats().PreconditionFailed)
	}

	// DELETE is polled through Location; deleting again succeeds.
	dp, err := lbs.BeginDelete(ctx, rg, "lb", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lbs.Get(ctx, rg, "lb", nil); err != nil {
		t.Errorf("the load balancer vanished before its delete operation completed: %v", err)
	}
	if _, err := dp.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if _, err := lbs.Get(ctx, rg, "lb", nil); status(err) != http.StatusNotFound {
		t.Errorf("GET after delete: %v", err)
	}
	dp, err = lbs.BeginDelete(ctx, rg, "lb", nil)
	if err != nil {
		t.Fatalf("delete of a missing load balancer: %v", err)
	}
	if _, err := dp.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
}

func TestReferencesAreChecked(t *testing.T) {
	_, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	lb := lbWithFrontend(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/publicIPAddresses/missing", sub, rg))
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil); code(err) != "InvalidResourceReference" {
		t.Errorf("frontend on a missing public IP: %v", err)
	}
	pip := publicIP(t, f, "pip")
	lb = lbWithFrontend(*pip.ID)
	lb.Properties.LoadBalancingRules = []*armnetwork.LoadBalancingRule{{Name: to("r"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
		FrontendIPConfiguration: &armnetwork.SubResource{ID: to("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb/frontendIPConfigurations/nope")},
		Protocol:                to(armnetwork.TransportProtocolTCP), FrontendPort: to[int32](80), BackendPort: to[int32](80),
	}}}
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil); code(err) != "InvalidResourceReference" {
		t.Errorf("rule on a missing frontend: %v", err)
	}
}

func TestPatchTagsAndPagination(t *testing.T) {
	srv, f := clients(t, azurefake.Options{PageSize: 2})
	ctx := context.Background()
	pip := publicIP(t, f, "pip")
	out, err := f.NewPublicIPAddressesClient().UpdateTags(ctx, rg, "pip", armnetwork.TagsObject{Tags: map[string]*string{"b": to("2")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if deref(out.Tags["b"]) != "2" || out.Tags["a"] != nil || deref(out.Etag) == deref(pip.Etag) {
		t.Errorf("PATCH tags: got tags %v etag %s (was %s)", out.Tags, deref(out.Etag), deref(pip.Etag))
	}

	srv.AddSecurityGroup(sub, rg, "nsg")
	rules := f.NewSecurityRulesClient()
	for i := range 5 {
		p, err := rules.BeginCreateOrUpdate(ctx, rg, "nsg", fmt.Sprintf("r%d", i), rule(int32(100+i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, poll); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rules.BeginCreateOrUpdate(ctx, rg, "nsg", "dup", rule(102), nil); code(err) != "SecurityRuleConflict" {
		t.Errorf("duplicate priority: %v", err)
	}
	pager := rules.NewListPager(rg, "nsg", nil)
	n, pages := 0, 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
		pages++
	}
	if n != 5 || pages != 3 {
		t.Errorf("listed %d rules in %d pages, want 5 in 3", n, pages)
	}
}

func TestInjectedFaults(t *testing.T) {
	srv, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	srv.InjectThrottle(1, 3*time.Second)
	_, err := f.NewLoadBalancersClient().Get(ctx, rg, "lb", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTooManyRequests || re.RawResponse.Header.Get("Retry-After") != "3" {
		t.Fatalf("throttled GET: %v", err)
	}
	srv.InjectServerErrors(1)
	if _, err := f.NewLoadBalancersClient().Get(ctx, rg, "lb", nil); status(err) != http.StatusInternalServerError {
		t.Errorf("injected 5xx: %v", err)
	}
	srv.CrashAfter(1)
	publicIP(t, f, "one")
	if _, err := f.NewPublicIPAddressesClient().BeginCreateOrUpdate(ctx, rg, "two", armnetwork.PublicIPAddress{Location: to("x")}, nil); status(err) != http.StatusServiceUnavailable {
		t.Errorf("write after the crash point: %v", err)
	}
	if _, err := f.NewPublicIPAddressesClient().Get(ctx, rg, "one", nil); err == nil {
		t.Error("reads must fail too after the crash")
	}
	srv.Recover()
	if _, err := f.NewPublicIPAddressesClient().Get(ctx, rg, "two", nil); status(err) != http.StatusNotFound {
		t.Errorf("the write that hit the crash was applied: %v", err)
	}
}

func rule(prio int32) armnetwork.SecurityRule {
	return armnetwork.SecurityRule{Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: to(prio), Direction: to(armnetwork.SecurityRuleDirectionInbound), Access: to(armnetwork.SecurityRuleAccessAllow),
		Protocol: to(armnetwork.SecurityRuleProtocolTCP), SourceAddressPrefix: to("*"), DestinationAddressPrefix: to("*"),
		SourcePortRange: to("*"), DestinationPortRange: to("80"),
	}}
}

func to[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
