package gcp

import (
	"context"
	"errors"
	"fmt"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
)

// The interfaces below are the subset of the Compute Engine API the provider
// uses. Keeping them narrow documents the IAM permissions it needs (see
// docs/providers/gcp.md) and is the seam tests use: they point the real REST
// clients at the wire-level fake in gcpfake.

// AddressesAPI is the subset of the regional Addresses API used.
type AddressesAPI interface {
	Get(ctx context.Context, req *computepb.GetAddressRequest, opts ...gax.CallOption) (*computepb.Address, error)
	Insert(ctx context.Context, req *computepb.InsertAddressRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Delete(ctx context.Context, req *computepb.DeleteAddressRequest, opts ...gax.CallOption) (*compute.Operation, error)
	SetLabels(ctx context.Context, req *computepb.SetLabelsAddressRequest, opts ...gax.CallOption) (*compute.Operation, error)
	List(ctx context.Context, req *computepb.ListAddressesRequest, opts ...gax.CallOption) *compute.AddressIterator
}

// ForwardingRulesAPI is the subset of the regional ForwardingRules API used.
type ForwardingRulesAPI interface {
	Get(ctx context.Context, req *computepb.GetForwardingRuleRequest, opts ...gax.CallOption) (*computepb.ForwardingRule, error)
	Insert(ctx context.Context, req *computepb.InsertForwardingRuleRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Delete(ctx context.Context, req *computepb.DeleteForwardingRuleRequest, opts ...gax.CallOption) (*compute.Operation, error)
	SetLabels(ctx context.Context, req *computepb.SetLabelsForwardingRuleRequest, opts ...gax.CallOption) (*compute.Operation, error)
	List(ctx context.Context, req *computepb.ListForwardingRulesRequest, opts ...gax.CallOption) *compute.ForwardingRuleIterator
}

// BackendServicesAPI is the subset of the RegionBackendServices API used.
type BackendServicesAPI interface {
	Get(ctx context.Context, req *computepb.GetRegionBackendServiceRequest, opts ...gax.CallOption) (*computepb.BackendService, error)
	Insert(ctx context.Context, req *computepb.InsertRegionBackendServiceRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Patch(ctx context.Context, req *computepb.PatchRegionBackendServiceRequest, opts ...gax.CallOption) (*compute.Operation, error)
	GetHealth(ctx context.Context, req *computepb.GetHealthRegionBackendServiceRequest, opts ...gax.CallOption) (*computepb.BackendServiceGroupHealth, error)
	Delete(ctx context.Context, req *computepb.DeleteRegionBackendServiceRequest, opts ...gax.CallOption) (*compute.Operation, error)
	List(ctx context.Context, req *computepb.ListRegionBackendServicesRequest, opts ...gax.CallOption) *compute.BackendServiceIterator
}

// HealthChecksAPI is the subset of the RegionHealthChecks API used.
type HealthChecksAPI interface {
	Get(ctx context.Context, req *computepb.GetRegionHealthCheckRequest, opts ...gax.CallOption) (*computepb.HealthCheck, error)
	Insert(ctx context.Context, req *computepb.InsertRegionHealthCheckRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Update(ctx context.Context, req *computepb.UpdateRegionHealthCheckRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Delete(ctx context.Context, req *computepb.DeleteRegionHealthCheckRequest, opts ...gax.CallOption) (*compute.Operation, error)
	List(ctx context.Context, req *computepb.ListRegionHealthChecksRequest, opts ...gax.CallOption) *compute.HealthCheckIterator
}

// InstanceGroupsAPI is the subset of the zonal (unmanaged) InstanceGroups API used.
type InstanceGroupsAPI interface {
	Get(ctx context.Context, req *computepb.GetInstanceGroupRequest, opts ...gax.CallOption) (*computepb.InstanceGroup, error)
	List(ctx context.Context, req *computepb.ListInstanceGroupsRequest, opts ...gax.CallOption) *compute.InstanceGroupIterator
	AggregatedList(ctx context.Context, req *computepb.AggregatedListInstanceGroupsRequest, opts ...gax.CallOption) *compute.InstanceGroupsScopedListPairIterator
	Insert(ctx context.Context, req *computepb.InsertInstanceGroupRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Delete(ctx context.Context, req *computepb.DeleteInstanceGroupRequest, opts ...gax.CallOption) (*compute.Operation, error)
	ListInstances(ctx context.Context, req *computepb.ListInstancesInstanceGroupsRequest, opts ...gax.CallOption) *compute.InstanceWithNamedPortsIterator
	AddInstances(ctx context.Context, req *computepb.AddInstancesInstanceGroupRequest, opts ...gax.CallOption) (*compute.Operation, error)
	RemoveInstances(ctx context.Context, req *computepb.RemoveInstancesInstanceGroupRequest, opts ...gax.CallOption) (*compute.Operation, error)
}

// FirewallsAPI is the subset of the global Firewalls API used.
type FirewallsAPI interface {
	Get(ctx context.Context, req *computepb.GetFirewallRequest, opts ...gax.CallOption) (*computepb.Firewall, error)
	Insert(ctx context.Context, req *computepb.InsertFirewallRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Update(ctx context.Context, req *computepb.UpdateFirewallRequest, opts ...gax.CallOption) (*compute.Operation, error)
	Delete(ctx context.Context, req *computepb.DeleteFirewallRequest, opts ...gax.CallOption) (*compute.Operation, error)
	List(ctx context.Context, req *computepb.ListFirewallsRequest, opts ...gax.CallOption) *compute.FirewallIterator
}

var (
	_ AddressesAPI       = (*compute.AddressesClient)(nil)
	_ ForwardingRulesAPI = (*compute.ForwardingRulesClient)(nil)
	_ BackendServicesAPI = (*compute.RegionBackendServicesClient)(nil)
	_ HealthChecksAPI    = (*compute.RegionHealthChecksClient)(nil)
	_ InstanceGroupsAPI  = (*compute.InstanceGroupsClient)(nil)
	_ FirewallsAPI       = (*compute.FirewallsClient)(nil)
)

// Clients bundles the Compute API clients the provider calls.
type Clients struct {
	Addresses       AddressesAPI
	ForwardingRules ForwardingRulesAPI
	BackendServices BackendServicesAPI
	HealthChecks    HealthChecksAPI
	InstanceGroups  InstanceGroupsAPI
	Firewalls       FirewallsAPI

	closers []func() error
}

// Close releases the clients' connections.
func (c *Clients) Close() error {
	var errs []error
	for _, f := range c.closers {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// NewClients builds the real REST clients. Without options they find
// credentials through Application Default Credentials (GKE Workload Identity,
// the metadata server, GOOGLE_APPLICATION_CREDENTIALS); option.WithEndpoint
// points them at another endpoint, as tests do with the fake.
func NewClients(ctx context.Context, opts ...option.ClientOption) (*Clients, error) {
	c := &Clients{}
	var err error
	add := func(what string, closer interface{ Close() error }, e error) {
		if e != nil && err == nil {
			err = fmt.Errorf("creating %s client: %w", what, e)
		}
		if e == nil {
			c.closers = append(c.closers, closer.Close)
		}
	}
	a, e := compute.NewAddressesRESTClient(ctx, opts...)
	add("addresses", a, e)
	fr, e := compute.NewForwardingRulesRESTClient(ctx, opts...)
	add("forwarding rules", fr, e)
	bs, e := compute.NewRegionBackendServicesRESTClient(ctx, opts...)
	add("backend services", bs, e)
	hc, e := compute.NewRegionHealthChecksRESTClient(ctx, opts...)
	add("health checks", hc, e)
	ig, e := compute.NewInstanceGroupsRESTClient(ctx, opts...)
	add("instance groups", ig, e)
	fw, e := compute.NewFirewallsRESTClient(ctx, opts...)
	add("firewalls", fw, e)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	c.Addresses, c.ForwardingRules, c.BackendServices = a, fr, bs
	c.HealthChecks, c.InstanceGroups, c.Firewalls = hc, ig, fw
	return c, nil
}
