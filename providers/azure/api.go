package azure

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
)

// LoadBalancersAPI is the subset of armnetwork.LoadBalancersClient the
// provider uses.
type LoadBalancersAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armnetwork.LoadBalancersClientGetOptions) (armnetwork.LoadBalancersClientGetResponse, error)
	BeginCreateOrUpdate(ctx context.Context, resourceGroup, name string, lb armnetwork.LoadBalancer, options *armnetwork.LoadBalancersClientBeginCreateOrUpdateOptions) (*runtime.Poller[armnetwork.LoadBalancersClientCreateOrUpdateResponse], error)
	BeginDelete(ctx context.Context, resourceGroup, name string, options *armnetwork.LoadBalancersClientBeginDeleteOptions) (*runtime.Poller[armnetwork.LoadBalancersClientDeleteResponse], error)
}

// PublicIPAddressesAPI is the subset of armnetwork.PublicIPAddressesClient
// the provider uses.
type PublicIPAddressesAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armnetwork.PublicIPAddressesClientGetOptions) (armnetwork.PublicIPAddressesClientGetResponse, error)
	NewListPager(resourceGroup string, options *armnetwork.PublicIPAddressesClientListOptions) *runtime.Pager[armnetwork.PublicIPAddressesClientListResponse]
	BeginCreateOrUpdate(ctx context.Context, resourceGroup, name string, pip armnetwork.PublicIPAddress, options *armnetwork.PublicIPAddressesClientBeginCreateOrUpdateOptions) (*runtime.Poller[armnetwork.PublicIPAddressesClientCreateOrUpdateResponse], error)
	BeginDelete(ctx context.Context, resourceGroup, name string, options *armnetwork.PublicIPAddressesClientBeginDeleteOptions) (*runtime.Poller[armnetwork.PublicIPAddressesClientDeleteResponse], error)
}

// SecurityRulesAPI is the subset of armnetwork.SecurityRulesClient the
// provider uses.
type SecurityRulesAPI interface {
	Get(ctx context.Context, resourceGroup, nsg, name string, options *armnetwork.SecurityRulesClientGetOptions) (armnetwork.SecurityRulesClientGetResponse, error)
	NewListPager(resourceGroup, nsg string, options *armnetwork.SecurityRulesClientListOptions) *runtime.Pager[armnetwork.SecurityRulesClientListResponse]
	BeginCreateOrUpdate(ctx context.Context, resourceGroup, nsg, name string, rule armnetwork.SecurityRule, options *armnetwork.SecurityRulesClientBeginCreateOrUpdateOptions) (*runtime.Poller[armnetwork.SecurityRulesClientCreateOrUpdateResponse], error)
	BeginDelete(ctx context.Context, resourceGroup, nsg, name string, options *armnetwork.SecurityRulesClientBeginDeleteOptions) (*runtime.Poller[armnetwork.SecurityRulesClientDeleteResponse], error)
}

// The real clients satisfy the narrow interfaces.
var (
	_ LoadBalancersAPI     = (*armnetwork.LoadBalancersClient)(nil)
	_ PublicIPAddressesAPI = (*armnetwork.PublicIPAddressesClient)(nil)
	_ SecurityRulesAPI     = (*armnetwork.SecurityRulesClient)(nil)
)
