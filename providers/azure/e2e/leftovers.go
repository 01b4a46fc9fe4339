// Package e2e checks the azure backend against a real Azure account
// (make e2e-azure) and lists what a run left behind. Only tests use it.
package e2e

import (
	"context"
	"fmt"
	"sort"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers/azure"
)

// Leftover is one Azure resource carrying a cluster's ownership marks.
type Leftover struct {
	Kind string // loadBalancer, publicIPAddress, securityRule
	ID   string
}

// Scope is where a run's resources can be.
type Scope struct {
	ResourceGroup string
	// SecurityGroup and SecurityGroupResourceGroup locate the nodes' NSG;
	// empty SecurityGroup skips security rules.
	SecurityGroup              string
	SecurityGroupResourceGroup string
}

// Leftovers lists the load balancers and public IPs in the resource group
// and the rules of the NSG that carry clusterID's ownership marks, sorted.
// A run that cleaned up after itself leaves none.
func Leftovers(ctx context.Context, f *armnetwork.ClientFactory, s Scope, clusterID string) ([]Leftover, error) {
	var out []Leftover
	lbs := f.NewLoadBalancersClient().NewListPager(s.ResourceGroup, nil)
	for lbs.More() {
		page, err := lbs.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing load balancers: %w", err)
		}
		for _, lb := range page.Value {
			if lb != nil && azure.ClusterOwned(lb.Tags, clusterID) {
				out = append(out, Leftover{Kind: "loadBalancer", ID: deref(lb.ID)})
			}
		}
	}
	pips := f.NewPublicIPAddressesClient().NewListPager(s.ResourceGroup, nil)
	for pips.More() {
		page, err := pips.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing public IPs: %w", err)
		}
		for _, pip := range page.Value {
			if pip != nil && azure.ClusterOwned(pip.Tags, clusterID) {
				out = append(out, Leftover{Kind: "publicIPAddress", ID: deref(pip.ID)})
			}
		}
	}
	if s.SecurityGroup != "" {
		rg := s.SecurityGroupResourceGroup
		if rg == "" {
			rg = s.ResourceGroup
		}
		rules := f.NewSecurityRulesClient().NewListPager(rg, s.SecurityGroup, nil)
		for rules.More() {
			page, err := rules.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("listing security rules of %s: %w", s.SecurityGroup, err)
			}
			for _, r := range page.Value {
				if r != nil && r.Properties != nil && azure.RuleClusterOwned(deref(r.Properties.Description), clusterID) {
					out = append(out, Leftover{Kind: "securityRule", ID: deref(r.ID)})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].ID < out[j].Kind+out[j].ID })
	return out, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
