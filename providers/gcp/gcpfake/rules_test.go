package gcpfake_test

import (
	"context"
	"strings"
	"testing"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/portico-lb/portico/providers/gcp/gcpfake"
)

type sdk struct {
	addrs *compute.AddressesClient
	frs   *compute.ForwardingRulesClient
	bss   *compute.RegionBackendServicesClient
	hcs   *compute.RegionHealthChecksClient
	igs   *compute.InstanceGroupsClient
	fws   *compute.FirewallsClient
}

func newSDK(t *testing.T, f *gcpfake.Server) *sdk {
	t.Helper()
	ctx := context.Background()
	opts := []option.ClientOption{option.WithEndpoint(f.URL()), option.WithoutAuthentication()}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := &sdk{}
	var err error
	s.addrs, err = compute.NewAddressesRESTClient(ctx, opts...)
	must(err)
	s.frs, err = compute.NewForwardingRulesRESTClient(ctx, opts...)
	must(err)
	s.bss, err = compute.NewRegionBackendServicesRESTClient(ctx, opts...)
	must(err)
	s.hcs, err = compute.NewRegionHealthChecksRESTClient(ctx, opts...)
	must(err)
	s.igs, err = compute.NewInstanceGroupsRESTClient(ctx, opts...)
	must(err)
	s.fws, err = compute.NewFirewallsRESTClient(ctx, opts...)
	must(err)
	return s
}

// wait runs a mutating call and waits for its operation.
func wait(ctx context.Context, op *compute.Operation, err error) error {
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}

// TestFakeRefusesWhatComputeRefuses drives each documented rule of the fake
// (see the URLs beside the rules in fake.go) through the real REST clients.
func TestFakeRefusesWhatComputeRefuses(t *testing.T) {
	const host = "host-p"
	f := gcpfake.New(gcpfake.Options{Project: project, Region: region, HostProject: host})
	defer f.Close()
	f.AddInstance(zone, "vm-1")
	c := newSDK(t, f)
	ctx := t.Context()
	hc := func(name, desc string) error {
		op, err := c.hcs.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region,
			HealthCheckResource: &computepb.HealthCheck{Name: proto.String(name), Type: proto.String("TCP"), Description: proto.String(desc)}})
		return wait(ctx, op, err)
	}
	addr := func(a *computepb.Address) error {
		op, err := c.addrs.Insert(ctx, &computepb.InsertAddressRequest{Project: project, Region: region, AddressResource: a})
		return wait(ctx, op, err)
	}
	rule := func(r *computepb.ForwardingRule) error {
		op, err := c.frs.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: project, Region: region, ForwardingRuleResource: r})
		return wait(ctx, op, err)
	}
	bsLink := "projects/" + project + "/regions/" + region + "/backendServices/bs"
	igLink := "projects/" + project + "/zones/" + zone + "/instanceGroups/ig"

	// Names are RFC 1035, descriptions at most 2048 characters.
	for _, name := range []string{"Upper", "1digit", "trailing-", strings.Repeat("a", 64)} {
		if err := hc(name, ""); code(err) != 400 {
			t.Errorf("name %q: %v, want 400", name, err)
		}
	}
	if err := hc("long-description", strings.Repeat("x", 2049)); code(err) != 400 {
		t.Errorf("a 2049-character description: %v, want 400", err)
	}
	if err := hc("hc", ""); err != nil {
		t.Fatal(err)
	}
	op, err := c.igs.Insert(ctx, &computepb.InsertInstanceGroupRequest{Project: project, Zone: zone, InstanceGroupResource: &computepb.InstanceGroup{Name: proto.String("ig")}})
	if err := wait(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	op, err = c.igs.AddInstances(ctx, &computepb.AddInstancesInstanceGroupRequest{Project: project, Zone: zone, InstanceGroup: "ig",
		InstanceGroupsAddInstancesRequestResource: &computepb.InstanceGroupsAddInstancesRequest{Instances: []*computepb.InstanceReference{{Instance: proto.String("projects/" + project + "/zones/" + zone + "/instances/vm-1")}}}})
	if err := wait(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	op, err = c.bss.Insert(ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("bs"), LoadBalancingScheme: proto.String("INTERNAL"), Protocol: proto.String("TCP"),
		HealthChecks: []string{"projects/" + project + "/regions/" + region + "/healthChecks/hc"},
		Backends:     []*computepb.Backend{{Group: proto.String(igLink)}}}})
	if err := wait(ctx, op, err); err != nil {
		t.Fatal(err)
	}

	// An instance in one load-balanced group cannot join another one.
	f.Put("zones/"+zone+"/instanceGroups", gcpfake.Object{"name": "other"})
	f.Put("regions/"+region+"/backendServices", gcpfake.Object{"name": "other-bs", "loadBalancingScheme": "EXTERNAL", "protocol": "TCP",
		"backends": []any{map[string]any{"group": "projects/" + project + "/zones/" + zone + "/instanceGroups/other"}}})
	_, err = c.igs.AddInstances(ctx, &computepb.AddInstancesInstanceGroupRequest{Project: project, Zone: zone, InstanceGroup: "other",
		InstanceGroupsAddInstancesRequestResource: &computepb.InstanceGroupsAddInstancesRequest{Instances: []*computepb.InstanceReference{{Instance: proto.String("projects/" + project + "/zones/" + zone + "/instances/vm-1")}}}})
	if code(err) != 400 {
		t.Errorf("adding an instance to a second load-balanced group: %v, want 400", err)
	}

	// Internal addresses: two rules share one only with SHARED_LOADBALANCER_VIP.
	if err := addr(&computepb.Address{Name: proto.String("plain"), AddressType: proto.String("INTERNAL"), Address: proto.String("10.128.0.10")}); err != nil {
		t.Fatal(err)
	}
	if err := addr(&computepb.Address{Name: proto.String("shared"), AddressType: proto.String("INTERNAL"), Address: proto.String("10.128.0.11"), Purpose: proto.String("SHARED_LOADBALANCER_VIP")}); err != nil {
		t.Fatal(err)
	}
	if err := addr(&computepb.Address{Name: proto.String("ext-shared"), AddressType: proto.String("EXTERNAL"), Purpose: proto.String("SHARED_LOADBALANCER_VIP")}); code(err) != 400 {
		t.Errorf("an external SHARED_LOADBALANCER_VIP address: %v, want 400", err)
	}
	for _, tc := range []struct {
		ip, name, proto string
		want            int
	}{
		{"10.128.0.10", "plain-tcp", "TCP", 0},
		{"10.128.0.11", "shared-tcp", "TCP", 0},
	} {
		err := rule(&computepb.ForwardingRule{Name: proto.String(tc.name), IPAddress: proto.String(tc.ip), IPProtocol: proto.String(tc.proto),
			LoadBalancingScheme: proto.String("INTERNAL"), BackendService: proto.String(bsLink), Ports: []string{"80"},
			Labels: map[string]string{"team": "a"}})
		if code(err) != tc.want {
			t.Errorf("rule %s: %v, want %d", tc.name, err, tc.want)
		}
	}
	// A second rule on the plain address is refused (UDP would need a UDP
	// or UNSPECIFIED backend service; the address check comes first).
	if err := rule(&computepb.ForwardingRule{Name: proto.String("plain-tcp2"), IPAddress: proto.String("10.128.0.10"), IPProtocol: proto.String("TCP"),
		LoadBalancingScheme: proto.String("INTERNAL"), BackendService: proto.String(bsLink), Ports: []string{"81"}}); code(err) != 400 {
		t.Errorf("a second internal rule on an address without SHARED_LOADBALANCER_VIP: %v, want 400", err)
	}

	// Labels sent at insert are ignored; setLabels sets them.
	got, err := c.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: project, Region: region, ForwardingRule: "plain-tcp"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetLabels()) != 0 || got.GetLabelFingerprint() == "" {
		t.Errorf("labels at insert: %v (fingerprint %q), want none and a fingerprint", got.GetLabels(), got.GetLabelFingerprint())
	}
	for _, bad := range []map[string]string{{"Team": "a"}, {"team": "A"}, {"t": strings.Repeat("a", 64)}, tooMany()} {
		op, err := c.frs.SetLabels(ctx, &computepb.SetLabelsForwardingRuleRequest{Project: project, Region: region, Resource: "plain-tcp",
			RegionSetLabelsRequestResource: &computepb.RegionSetLabelsRequest{Labels: bad, LabelFingerprint: got.LabelFingerprint}})
		if code(wait(ctx, op, err)) != 400 {
			t.Errorf("labels %d %v: %v, want 400", len(bad), bad["Team"], err)
		}
	}
	op, err = c.frs.SetLabels(ctx, &computepb.SetLabelsForwardingRuleRequest{Project: project, Region: region, Resource: "plain-tcp",
		RegionSetLabelsRequestResource: &computepb.RegionSetLabelsRequest{Labels: map[string]string{"team": "a"}, LabelFingerprint: got.LabelFingerprint}})
	if err := wait(ctx, op, err); err != nil {
		t.Fatal(err)
	}

	// What a rule references cannot change or go.
	bs, err := c.bss.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: project, Region: region, BackendService: "bs"})
	if err != nil {
		t.Fatal(err)
	}
	bs.Protocol = proto.String("UDP")
	if _, err := c.bss.Patch(ctx, &computepb.PatchRegionBackendServiceRequest{Project: project, Region: region, BackendService: "bs", BackendServiceResource: bs}); code(err) != 400 {
		t.Errorf("changing the protocol of a backend service a rule uses: %v, want 400", err)
	}
	for what, del := range map[string]func() error{
		"address": func() error {
			op, err := c.addrs.Delete(ctx, &computepb.DeleteAddressRequest{Project: project, Region: region, Address: "plain"})
			return wait(ctx, op, err)
		},
		"health check": func() error {
			op, err := c.hcs.Delete(ctx, &computepb.DeleteRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "hc"})
			return wait(ctx, op, err)
		},
		"instance group": func() error {
			op, err := c.igs.Delete(ctx, &computepb.DeleteInstanceGroupRequest{Project: project, Zone: zone, InstanceGroup: "ig"})
			return wait(ctx, op, err)
		},
	} {
		if err := del(); code(err) != 400 {
			t.Errorf("deleting an %s in use: %v, want 400", what, err)
		}
	}

	// External addresses are reserved by IP only to promote one in use.
	if err := addr(&computepb.Address{Name: proto.String("by-number"), Address: proto.String("203.0.113.50")}); code(err) != 400 {
		t.Errorf("reserving an external IP by number: %v, want 400", err)
	}

	// Shared VPC: the network's firewall rules live in the host project.
	fw := func(p string) *computepb.InsertFirewallRequest {
		return &computepb.InsertFirewallRequest{Project: p, FirewallResource: &computepb.Firewall{Name: proto.String("fw"),
			Network: proto.String("projects/" + host + "/global/networks/shared"), SourceRanges: []string{"0.0.0.0/0"},
			Allowed: []*computepb.Allowed{{IPProtocol: proto.String("tcp")}}}}
	}
	op, err = c.fws.Insert(ctx, fw(project))
	if code(wait(ctx, op, err)) != 400 {
		t.Errorf("a firewall rule for the host's network in a service project: %v, want 400", err)
	}
	op, err = c.fws.Insert(ctx, fw(host))
	if err := wait(ctx, op, err); err != nil {
		t.Errorf("a firewall rule in the host project: %v", err)
	}
}

func tooMany() map[string]string {
	m := map[string]string{}
	for i := range 65 {
		m["k"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	return m
}
