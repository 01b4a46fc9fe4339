package azurefake_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers/azure/azurefake"
)

// The fake refuses, through the real SDK client, what Azure documents as
// invalid (see rules.go for the sources).

func createPublicIP(ctx context.Context, f *armnetwork.ClientFactory, name string, tags map[string]*string) error {
	p, err := f.NewPublicIPAddressesClient().BeginCreateOrUpdate(ctx, rg, name, armnetwork.PublicIPAddress{
		Location: to("westeurope"), Tags: tags,
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: to(armnetwork.IPAllocationMethodStatic)},
	}, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(ctx, poll)
	return err
}

func TestTagRules(t *testing.T) {
	_, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	many := map[string]*string{}
	for i := range 51 {
		many[fmt.Sprintf("t%d", i)] = to("v")
	}
	for _, tc := range []struct {
		name string
		tags map[string]*string
		code string
	}{
		{"slash in name", map[string]*string{"portico.dev/cluster": to("c")}, "InvalidTagNameCharacters"},
		{"percent in name", map[string]*string{"a%b": to("c")}, "InvalidTagNameCharacters"},
		{"question mark in name", map[string]*string{"a?b": to("c")}, "InvalidTagNameCharacters"},
		{"name of 513", map[string]*string{strings.Repeat("n", 513): to("c")}, "InvalidTagNameLength"},
		{"value of 257", map[string]*string{"n": to(strings.Repeat("v", 257))}, "InvalidTagValueLength"},
		{"51 tags", many, "InvalidTagCount"},
		{"valid: slash in value, 512/256 long", map[string]*string{"portico-service": to("ns/name"), strings.Repeat("n", 512): to(strings.Repeat("v", 256))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := createPublicIP(ctx, f, "pip", tc.tags)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("valid tags refused: %v", err)
				}
				return
			}
			if status(err) != http.StatusBadRequest || code(err) != tc.code {
				t.Fatalf("got %v, want 400 %s", err, tc.code)
			}
		})
	}
	// PATCH of tags follows the same rules.
	if _, err := f.NewPublicIPAddressesClient().UpdateTags(ctx, rg, "pip", armnetwork.TagsObject{Tags: map[string]*string{"a/b": to("c")}}, nil); code(err) != "InvalidTagNameCharacters" {
		t.Errorf("PATCH with a '/' in a tag name: %v", err)
	}
}

func TestResourceNameRules(t *testing.T) {
	_, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	for _, name := range []string{"-lead", "trail-", "trail.", "sp ace", "sl$sh", strings.Repeat("a", 81)} {
		if err := createPublicIP(ctx, f, name, nil); code(err) != "InvalidResourceName" {
			t.Errorf("public IP %q: %v, want InvalidResourceName", name, err)
		}
	}
	for _, name := range []string{"a", "trail_", "A.b-c_d", strings.Repeat("a", 80)} {
		if err := createPublicIP(ctx, f, name, nil); err != nil {
			t.Errorf("public IP %q refused: %v", name, err)
		}
	}
	pip := publicIP(t, f, "pip")
	lb := lbWithFrontend(*pip.ID)
	lb.Properties.FrontendIPConfigurations[0].Name = to("fe-")
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil); code(err) != "InvalidResourceName" {
		t.Errorf("frontend named fe-: %v", err)
	}
}

func TestSecurityRuleRules(t *testing.T) {
	srv, f := clients(t, azurefake.Options{})
	srv.AddSecurityGroup(sub, rg, "nsg")
	ctx := context.Background()
	rules := f.NewSecurityRulesClient()
	put := func(name string, r armnetwork.SecurityRule) error {
		p, err := rules.BeginCreateOrUpdate(ctx, rg, "nsg", name, r, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, poll)
		return err
	}
	long := rule(100)
	long.Properties.Description = to(strings.Repeat("d", 141))
	if err := put("long", long); status(err) != http.StatusBadRequest || code(err) != "SecurityRuleDescriptionTooLong" {
		t.Errorf("description of 141 characters: %v", err)
	}
	ok := rule(100)
	ok.Properties.Description = to(strings.Repeat("d", 140))
	if err := put("ok", ok); err != nil {
		t.Errorf("description of 140 characters: %v", err)
	}
	if err := put("ok2", rule(100)); code(err) != "SecurityRuleConflict" {
		t.Errorf("same priority and direction: %v", err)
	}
	if err := put("bad-", rule(101)); code(err) != "InvalidResourceName" {
		t.Errorf("rule named bad-: %v", err)
	}
	for _, prio := range []int32{99, 4097} {
		if err := put("p", rule(prio)); code(err) != "SecurityRuleInvalidPriority" {
			t.Errorf("priority %d: %v", prio, err)
		}
	}
}

func TestIPBackendAddressesNeedAVirtualNetwork(t *testing.T) {
	_, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	pip := publicIP(t, f, "pip")
	lb := lbWithFrontend(*pip.ID)
	addr := &armnetwork.LoadBalancerBackendAddress{Name: to("node-a"), Properties: &armnetwork.LoadBalancerBackendAddressPropertiesFormat{IPAddress: to("10.0.0.4")}}
	lb.Properties.BackendAddressPools = []*armnetwork.BackendAddressPool{{Name: to("pool"), Properties: &armnetwork.BackendAddressPoolPropertiesFormat{
		LoadBalancerBackendAddresses: []*armnetwork.LoadBalancerBackendAddress{addr},
	}}}
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil); status(err) != http.StatusBadRequest || code(err) != "BackendAddressMissingVirtualNetwork" {
		t.Fatalf("IP backend without a virtual network: %v", err)
	}
	addr.Properties.VirtualNetwork = &armnetwork.SubResource{ID: to(fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/vnet", sub, rg))}
	p, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
}

// A probe or pool still named by a rule cannot be removed
// (https://learn.microsoft.com/en-us/azure/load-balancer/manage-probes-how-to#remove-a-health-probe:
// "a health probe can't be removed while a load balancing rule uses it").
func TestReferencedProbeCannotBeRemoved(t *testing.T) {
	_, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	pip := publicIP(t, f, "pip")
	lbID := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/loadBalancers/lb", sub, rg)
	lb := lbWithFrontend(*pip.ID)
	lb.Properties.Probes = []*armnetwork.Probe{{Name: to("probe"), Properties: &armnetwork.ProbePropertiesFormat{Protocol: to(armnetwork.ProbeProtocolTCP), Port: to[int32](80)}}}
	lb.Properties.BackendAddressPools = []*armnetwork.BackendAddressPool{{Name: to("pool")}}
	lb.Properties.LoadBalancingRules = []*armnetwork.LoadBalancingRule{{Name: to("r"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
		FrontendIPConfiguration: &armnetwork.SubResource{ID: to(lbID + "/frontendIPConfigurations/fe")},
		BackendAddressPool:      &armnetwork.SubResource{ID: to(lbID + "/backendAddressPools/pool")},
		Probe:                   &armnetwork.SubResource{ID: to(lbID + "/probes/probe")},
		Protocol:                to(armnetwork.TransportProtocolTCP), FrontendPort: to[int32](80), BackendPort: to[int32](80),
	}}}
	p, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	noProbe := lb
	noProbe.Properties.Probes = nil
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", noProbe, nil); code(err) != "InvalidResourceReference" {
		t.Errorf("removing a probe a rule uses: %v", err)
	}
	noProbe.Properties.BackendAddressPools = nil
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", noProbe, nil); code(err) != "InvalidResourceReference" {
		t.Errorf("removing a pool a rule uses: %v", err)
	}
}

// Operations the fault core fails end the way ARM ends them: the poll shows
// status Failed (or Canceled) with the error, the SDK returns that error,
// and the resource is as it was before.
func TestOperationFailures(t *testing.T) {
	for _, tc := range []struct {
		kind fault.Kind
		op   string
		code string
	}{
		{fault.OpQuota, azurefake.OpPublicIPWrite, "PublicIPCountLimitReached"},
		{fault.OpQuota, azurefake.OpLoadBalancerWrite, "QuotaExceeded"},
		{fault.OpConflict, azurefake.OpLoadBalancerWrite, "AnotherOperationInProgress"},
		{fault.OpInternal, azurefake.OpLoadBalancerWrite, "InternalServerError"},
		{fault.OpSuperseded, azurefake.OpLoadBalancerWrite, "CanceledAndSupersededDueToAnotherOperation"},
		{fault.OpInternal, azurefake.OpLoadBalancerDelete, "InternalServerError"},
	} {
		t.Run(string(tc.kind)+" "+tc.op, func(t *testing.T) {
			srv, f := clients(t, azurefake.Options{OperationLatency: 5 * time.Millisecond})
			ctx := context.Background()
			lbs := f.NewLoadBalancersClient()
			srv.Faults().FailOperations(fault.OpRule{Kind: tc.kind, Times: 1, Op: tc.op})
			var err error
			switch tc.op {
			case azurefake.OpPublicIPWrite:
				err = createPublicIP(ctx, f, "pip", nil)
				if _, gerr := f.NewPublicIPAddressesClient().Get(ctx, rg, "pip", nil); status(gerr) != http.StatusNotFound {
					t.Errorf("a failed create left the public IP: %v", gerr)
				}
			case azurefake.OpLoadBalancerWrite:
				pip := publicIP(t, f, "pip")
				poller, berr := lbs.BeginCreateOrUpdate(ctx, rg, "lb", lbWithFrontend(*pip.ID), nil)
				if berr != nil {
					t.Fatalf("the request itself must be accepted: %v", berr)
				}
				_, err = poller.PollUntilDone(ctx, poll)
				if _, gerr := lbs.Get(ctx, rg, "lb", nil); status(gerr) != http.StatusNotFound {
					t.Errorf("a failed create left the load balancer: %v", gerr)
				}
			case azurefake.OpLoadBalancerDelete:
				pip := publicIP(t, f, "pip")
				poller, _ := lbs.BeginCreateOrUpdate(ctx, rg, "lb", lbWithFrontend(*pip.ID), nil)
				if _, perr := poller.PollUntilDone(ctx, poll); perr != nil {
					t.Fatal(perr)
				}
				dp, derr := lbs.BeginDelete(ctx, rg, "lb", nil)
				if derr != nil {
					t.Fatal(derr)
				}
				_, err = dp.PollUntilDone(ctx, poll)
				got, gerr := lbs.Get(ctx, rg, "lb", nil)
				if gerr != nil || deref(got.Properties.ProvisioningState) != armnetwork.ProvisioningStateFailed {
					t.Errorf("after a failed delete the load balancer must stay, Failed: %v", gerr)
				}
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.ErrorCode != tc.code {
				t.Fatalf("operation error %v, want code %s", err, tc.code)
			}
			if n := srv.Stats().OperationsFailed; n != 1 {
				t.Errorf("OperationsFailed = %d, want 1", n)
			}
		})
	}
}

// A failed update leaves the previous state, Failed, and the next PUT
// repairs it.
func TestFailedUpdateKeepsThePreviousState(t *testing.T) {
	srv, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	lbs := f.NewLoadBalancersClient()
	pip := publicIP(t, f, "pip")
	poller, _ := lbs.BeginCreateOrUpdate(ctx, rg, "lb", lbWithFrontend(*pip.ID), nil)
	if _, err := poller.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	srv.Faults().FailOperations(fault.OpRule{Kind: fault.OpInternal, Times: 1})
	changed := lbWithFrontend(*pip.ID)
	changed.Tags = map[string]*string{"k": to("v")}
	poller, _ = lbs.BeginCreateOrUpdate(ctx, rg, "lb", changed, nil)
	if _, err := poller.PollUntilDone(ctx, poll); code(err) != "InternalServerError" {
		t.Fatalf("update: %v", err)
	}
	got, err := lbs.Get(ctx, rg, "lb", nil)
	if err != nil || got.Tags["k"] != nil || deref(got.Properties.ProvisioningState) != armnetwork.ProvisioningStateFailed {
		t.Fatalf("after a failed update: tags %v, state %v, err %v", got.Tags, got.Properties.ProvisioningState, err)
	}
	poller, _ = lbs.BeginCreateOrUpdate(ifMatch(deref(got.Etag)), rg, "lb", changed, nil)
	if out, err := poller.PollUntilDone(ctx, poll); err != nil || deref(out.Tags["k"]) != "v" {
		t.Fatalf("repairing PUT: %v", err)
	}
}

// Every request goes through the fault core: its call log names the ARM
// operation, and its rules select requests by it.
func TestFaultCoreVocabulary(t *testing.T) {
	srv, f := clients(t, azurefake.Options{})
	ctx := context.Background()
	srv.Faults().Add(fault.Rule{Kind: fault.Unavailable, Times: 1, Op: azurefake.OpLoadBalancerRead})
	if _, err := f.NewPublicIPAddressesClient().Get(ctx, rg, "x", nil); status(err) != http.StatusNotFound {
		t.Errorf("a rule for load balancer reads hit a public IP read: %v", err)
	}
	if _, err := f.NewLoadBalancersClient().Get(ctx, rg, "x", nil); status(err) != http.StatusServiceUnavailable {
		t.Errorf("injected Unavailable: %v", err)
	}
	calls := srv.Faults().Calls()
	if len(calls) != 2 || calls[1].Op != azurefake.OpLoadBalancerRead || calls[1].Outcome != string(fault.Unavailable) {
		t.Errorf("call log: %+v", calls)
	}
	if calls[0].Outcome != "ResourceNotFound" {
		t.Errorf("the fake's own answer is not in the call log: %+v", calls[0])
	}
	if got := srv.Calls(); len(got) != 2 || got[1].Method != http.MethodGet || !strings.Contains(got[1].Path, "/loadBalancers/x") {
		t.Errorf("Calls: %+v", got)
	}
}

// Load balancer and NSG limits (lowered here so the test reaches them).
func TestLimits(t *testing.T) {
	srv, f := clients(t, azurefake.Options{Limits: azurefake.Limits{FrontendsPerLoadBalancer: 1, RulesPerSecurityGroup: 1}})
	ctx := context.Background()
	a, b := publicIP(t, f, "a"), publicIP(t, f, "b")
	lb := lbWithFrontend(*a.ID)
	lb.Properties.FrontendIPConfigurations = append(lb.Properties.FrontendIPConfigurations, &armnetwork.FrontendIPConfiguration{
		Name: to("fe2"), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{PublicIPAddress: &armnetwork.PublicIPAddress{ID: b.ID}},
	})
	if _, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, "lb", lb, nil); status(err) != http.StatusBadRequest || code(err) != "LoadBalancerFrontendIPConfigurationCountLimitReached" {
		t.Errorf("two frontends over a limit of one: %v", err)
	}
	srv.AddSecurityGroup(sub, rg, "nsg")
	p, err := f.NewSecurityRulesClient().BeginCreateOrUpdate(ctx, rg, "nsg", "one", rule(100), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewSecurityRulesClient().BeginCreateOrUpdate(ctx, rg, "nsg", "two", rule(101), nil); code(err) != "SecurityRuleCountLimitReached" {
		t.Errorf("a second rule over a limit of one: %v", err)
	}
}
