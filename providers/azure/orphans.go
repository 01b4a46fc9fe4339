package azure

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/providers"
)

// Kinds the orphan scan reports.
const (
	kindPublicIP     = "publicIP"
	kindFrontend     = "frontend"
	kindSecurityRule = "securityRule"
)

var _ providers.OrphanScanner = (*Provider)(nil)

// Fingerprint is the name stem of key's parts (ResourceName): frontends,
// pools, probes and rules of the shared load balancers carry no tags and
// are known by it, as are NSG rules whose description holds the hashed
// service mark.
func (p *Provider) Fingerprint(key providers.Key) string { return ResourceName(key) }

// ListOwned lists the public IPs tagged for clusterID, the frontends of the
// cluster's shared load balancers, and the NSG rules whose description marks
// them as the cluster's. It changes nothing.
func (p *Provider) ListOwned(ctx context.Context, clusterID string) ([]providers.Owned, error) {
	var out []providers.Owned
	pager := p.pips.NewListPager(p.opts.ResourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, classify("listing public IPs", err)
		}
		for _, pip := range page.Value {
			if pip == nil || !ClusterOwned(pip.Tags, clusterID) {
				continue
			}
			o := providers.Owned{Kind: kindPublicIP, ID: deref(pip.ID)}
			if key, ok := providers.ServiceFromMark(clusterID, tagMarks(pip.Tags)[providers.TagService]); ok {
				o.Service = key
			} else {
				o.Fingerprint = deref(pip.Name)
			}
			out = append(out, o)
		}
	}
	public, internal := p.LoadBalancerNames()
	for _, name := range []string{public, internal} {
		resp, err := p.lbs.Get(ctx, p.opts.ResourceGroup, name, nil)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, classify("reading load balancer "+name, err)
		}
		lb := resp.LoadBalancer
		if !ClusterOwned(lb.Tags, clusterID) || lb.Properties == nil {
			continue
		}
		for _, fe := range lb.Properties.FrontendIPConfigurations {
			if fe != nil && strings.HasPrefix(deref(fe.Name), "portico-") {
				out = append(out, providers.Owned{Kind: kindFrontend, ID: name + "/" + deref(fe.Name), Fingerprint: deref(fe.Name)})
			}
		}
	}
	if p.opts.SecurityGroupName == "" {
		return out, nil
	}
	rules := p.rules.NewListPager(p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName, nil)
	for rules.More() {
		page, err := rules.NextPage(ctx)
		if err != nil {
			return nil, classify("listing security rules", err)
		}
		for _, r := range page.Value {
			if r == nil || r.Properties == nil || !RuleClusterOwned(deref(r.Properties.Description), clusterID) {
				continue
			}
			o := providers.Owned{Kind: kindSecurityRule, ID: deref(r.Name)}
			mark := descriptionMarks(deref(r.Properties.Description))[providers.TagService]
			if key, ok := providers.ServiceFromMark(clusterID, mark); ok && !strings.HasPrefix(mark, hashedServicePrefix) {
				o.Service = key
			} else {
				o.Fingerprint = strings.TrimSuffix(strings.TrimSuffix(deref(r.Name), denyRuleSuffix), probeRuleSuffix)
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// DeleteOrphan removes a frontend (with its rules, pool and probe) from a
// shared load balancer tagged for clusterID, or an NSG rule whose
// description marks it as clusterID's; public IPs name their Service and go
// through Delete.
func (p *Provider) DeleteOrphan(ctx context.Context, clusterID string, o providers.Owned) error {
	if clusterID != p.opts.ClusterID {
		return fmt.Errorf("azure: orphan of cluster %q, this operator runs cluster %q", clusterID, p.opts.ClusterID)
	}
	log := logr.FromContextOrDiscard(ctx)
	switch o.Kind {
	case kindFrontend:
		lbName, base, ok := strings.Cut(o.ID, "/")
		public, internal := p.LoadBalancerNames()
		if !ok || (lbName != public && lbName != internal) || base != o.Fingerprint {
			return fmt.Errorf("azure: %s is not a frontend of the cluster's load balancers", o.ID)
		}
		log.Info("Removing orphaned frontend", "loadBalancer", lbName, "frontend", base)
		// A removal leaves a load balancer Portico does not own untouched.
		_, err := p.writer.submit(ctx, lbName, &change{remove: true, apply: func(lb *armnetwork.LoadBalancer) bool {
			changed, _ := removeParts(lb, base)
			return changed
		}})
		return err
	case kindSecurityRule:
		rg, nsg := p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName
		resp, err := p.rules.Get(ctx, rg, nsg, o.ID, nil)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return classify("reading security rule "+o.ID, err)
		}
		if resp.Properties == nil || !RuleClusterOwned(deref(resp.Properties.Description), clusterID) {
			return nil
		}
		log.Info("Deleting orphaned security rule", "securityRule", o.ID)
		poller, err := p.rules.BeginDelete(policy.WithHTTPHeader(ctx, map[string][]string{"If-Match": {deref(resp.Etag)}}), rg, nsg, o.ID, nil)
		if err != nil {
			return classify("deleting security rule "+o.ID, err)
		}
		if _, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions()); err != nil {
			return classify("deleting security rule "+o.ID, err)
		}
		return nil
	}
	return fmt.Errorf("azure: %s %s names its Service; delete it through the Service's cleanup", o.Kind, o.ID)
}
