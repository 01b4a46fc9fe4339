// Package gcpe2e is test support for `make e2e-gcp`: the scenario that runs
// Portico's GCP backend against a real project, and the leftover checker that
// lists what still carries a run's ownership marks. Production code never
// imports it.
package gcpe2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
)

// Resource is one listed Compute Engine resource.
type Resource struct {
	// Kind is the collection ("addresses", "forwardingRules", ...).
	Kind        string
	Name        string
	Description string
	Labels      map[string]string
}

func (r Resource) String() string { return r.Kind + "/" + r.Name }

// Leftovers returns the resources that carry clusterID's ownership marks
// (docs/architecture.md, "Ownership marks per cloud"): the description's
// portico.dev/cluster, or the portico-cluster label; sorted.
func Leftovers(rs []Resource, clusterID string) []Resource {
	var out []Resource
	for _, r := range rs {
		m := gcp.Marks(r.Description)
		if m[providers.TagCluster] == clusterID && m[providers.TagManagedBy] == providers.ManagedByValue ||
			r.Labels["portico-cluster"] == clusterID && r.Labels["portico-managed-by"] == providers.ManagedByValue {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Where says where to list.
type Where struct {
	Project, Region string
	// NetworkProject holds the firewall rules (a Shared VPC host); empty:
	// Project.
	NetworkProject string
}

// List lists every kind of resource the GCP backend creates: regional
// addresses, forwarding rules, backend services and health checks, the
// firewall rules of the network's project, and instance groups in every zone
// of the region.
func List(ctx context.Context, w Where, opts ...option.ClientOption) ([]Resource, error) {
	if w.NetworkProject == "" {
		w.NetworkProject = w.Project
	}
	var out []Resource
	add := func(kind, name, desc string, labels map[string]string) {
		out = append(out, Resource{Kind: kind, Name: name, Description: desc, Labels: labels})
	}
	addrs, err := compute.NewAddressesRESTClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer addrs.Close()
	frs, err := compute.NewForwardingRulesRESTClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer frs.Close()
	bss, err := compute.NewRegionBackendServicesRESTClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer bss.Close()
	hcs, err := compute.NewRegionHealthChecksRESTClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer hcs.Close()
	fws, err := compute.NewFirewallsRESTClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer fws.Close()
	igs, err := compute.NewInstanceGroupsRESTClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer igs.Close()

	if err := each(addrs.List(ctx, &computepb.ListAddressesRequest{Project: w.Project, Region: w.Region}), func(a *computepb.Address) {
		add("addresses", a.GetName(), a.GetDescription(), a.GetLabels())
	}); err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	if err := each(frs.List(ctx, &computepb.ListForwardingRulesRequest{Project: w.Project, Region: w.Region}), func(r *computepb.ForwardingRule) {
		add("forwardingRules", r.GetName(), r.GetDescription(), r.GetLabels())
	}); err != nil {
		return nil, fmt.Errorf("listing forwarding rules: %w", err)
	}
	if err := each(bss.List(ctx, &computepb.ListRegionBackendServicesRequest{Project: w.Project, Region: w.Region}), func(b *computepb.BackendService) {
		add("backendServices", b.GetName(), b.GetDescription(), nil)
	}); err != nil {
		return nil, fmt.Errorf("listing backend services: %w", err)
	}
	if err := each(hcs.List(ctx, &computepb.ListRegionHealthChecksRequest{Project: w.Project, Region: w.Region}), func(h *computepb.HealthCheck) {
		add("healthChecks", h.GetName(), h.GetDescription(), nil)
	}); err != nil {
		return nil, fmt.Errorf("listing health checks: %w", err)
	}
	if err := each(fws.List(ctx, &computepb.ListFirewallsRequest{Project: w.NetworkProject}), func(f *computepb.Firewall) {
		add("firewalls", f.GetName(), f.GetDescription(), nil)
	}); err != nil {
		return nil, fmt.Errorf("listing firewall rules: %w", err)
	}
	it := igs.AggregatedList(ctx, &computepb.AggregatedListInstanceGroupsRequest{Project: w.Project})
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing instance groups: %w", err)
		}
		zone := strings.TrimPrefix(pair.Key, "zones/")
		if gcp.RegionOf(zone) != w.Region {
			continue
		}
		for _, g := range pair.Value.GetInstanceGroups() {
			add("instanceGroups", zone+"/"+g.GetName(), g.GetDescription(), nil)
		}
	}
	return out, nil
}

// each drains a compute iterator.
func each[T any](it interface{ Next() (T, error) }, f func(T)) error {
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return err
		}
		f(v)
	}
}
