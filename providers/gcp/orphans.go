package gcp

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/go-logr/logr"
	"google.golang.org/api/iterator"

	"github.com/portico-lb/portico/providers"
)

var _ providers.OrphanScanner = (*Provider)(nil)

// Fingerprint is the Service's name stem; every GCP resource names its
// Service in its description, so the scan never needs it.
func (p *Provider) Fingerprint(key providers.Key) string { return BaseName(key) }

// each drains a Compute list iterator.
func each[T any](next func() (T, error), f func(T)) error {
	for {
		v, err := next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return err
		}
		f(v)
	}
}

// ListOwned lists the region's addresses, forwarding rules, backend
// services and health checks, the network project's firewall rules (only
// those of this region, see markRegion) whose descriptions mark them as
// clusterID's, and the cluster's instance groups, Unreferenced when no
// backend service of the region uses them (a Delete interrupted after its
// backend service went). It changes nothing.
func (p *Provider) ListOwned(ctx context.Context, clusterID string) ([]providers.Owned, error) {
	var out []providers.Owned
	add := func(kind, link, desc string) {
		m := Marks(desc)
		if m[providers.TagManagedBy] != providers.ManagedByValue || m[providers.TagCluster] != clusterID {
			return
		}
		if key, ok := providers.ServiceFromMark(clusterID, m[providers.TagService]); ok {
			out = append(out, providers.Owned{Kind: kind, ID: link, Service: key})
		}
	}
	proj, region := p.opts.Project, p.opts.Region
	var used = map[string]bool{} // instance group links referenced by a backend service
	lists := []struct {
		what string
		run  func(context.Context) error
	}{
		{"addresses", func(ctx context.Context) error {
			it := p.api.Addresses.List(ctx, &computepb.ListAddressesRequest{Project: proj, Region: region})
			return each(it.Next, func(a *computepb.Address) { add(kindAddress, a.GetSelfLink(), a.GetDescription()) })
		}},
		{"forwarding rules", func(ctx context.Context) error {
			it := p.api.ForwardingRules.List(ctx, &computepb.ListForwardingRulesRequest{Project: proj, Region: region})
			return each(it.Next, func(r *computepb.ForwardingRule) { add(kindForwardingRule, r.GetSelfLink(), r.GetDescription()) })
		}},
		{"backend services", func(ctx context.Context) error {
			it := p.api.BackendServices.List(ctx, &computepb.ListRegionBackendServicesRequest{Project: proj, Region: region})
			return each(it.Next, func(b *computepb.BackendService) {
				for _, be := range b.GetBackends() {
					if zone, name, ok := zonalName(be.GetGroup()); ok {
						used[zone+"/"+name] = true
					}
				}
				add(kindBackendService, b.GetSelfLink(), b.GetDescription())
			})
		}},
		{"health checks", func(ctx context.Context) error {
			it := p.api.HealthChecks.List(ctx, &computepb.ListRegionHealthChecksRequest{Project: proj, Region: region})
			return each(it.Next, func(h *computepb.HealthCheck) { add(kindHealthCheck, h.GetSelfLink(), h.GetDescription()) })
		}},
		{"firewall rules", func(ctx context.Context) error {
			it := p.api.Firewalls.List(ctx, &computepb.ListFirewallsRequest{Project: p.networkProject()})
			return each(it.Next, func(f *computepb.Firewall) {
				if p.firewallInRegion(f) {
					add(kindFirewall, f.GetSelfLink(), f.GetDescription())
				}
			})
		}},
	}
	for _, l := range lists {
		if err := p.call(ctx, "listing "+l.what, l.run); err != nil {
			return nil, err
		}
	}
	groups, err := p.clusterGroups(ctx, clusterID)
	if err != nil {
		return nil, err
	}
	for _, link := range groups {
		zone, name, _ := zonalName(link)
		ig, err := p.getInstanceGroup(ctx, zone, name)
		if err != nil {
			return nil, err
		}
		if ig == nil || !ownedByCluster(ig.GetDescription(), clusterID) {
			continue
		}
		out = append(out, providers.Owned{Kind: kindInstanceGroup, ID: link, Unreferenced: !used[zone+"/"+name]})
	}
	return out, nil
}

// DeleteOrphan deletes one of the cluster's instance groups that no backend
// service uses; Compute Engine refuses while one does, and then it stays.
func (p *Provider) DeleteOrphan(ctx context.Context, clusterID string, o providers.Owned) error {
	if o.Kind != kindInstanceGroup {
		return fmt.Errorf("gcp: %s %s names its Service; delete it through the Service's cleanup", o.Kind, o.ID)
	}
	return p.collectInstanceGroup(ctx, logr.FromContextOrDiscard(ctx), clusterID, o.ID)
}
