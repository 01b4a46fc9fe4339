package azure

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/providers"
)

// Security rules cannot carry tags, so Portico writes its ownership marks
// into the rule's description as "key=value" pairs separated by ";", the same
// three marks as its tags. A rule under Portico's name whose description lacks
// them is someone else's and is never modified or deleted.

// First priority Portico tries for its NSG rules; lower numbers are left to
// the cluster's own rules.
const firstRulePriority = 500

func (p *Provider) securityRuleID(base string) string {
	return armID(p.opts.SubscriptionID, p.opts.SecurityGroupResourceGroup, "networkSecurityGroups", p.opts.SecurityGroupName) + "/securityRules/" + base
}

// ruleDescription encodes the ownership marks of key.
func ruleDescription(key providers.Key) string {
	tags := providers.OwnershipTags(key)
	return providers.TagManagedBy + "=" + tags[providers.TagManagedBy] + ";" +
		providers.TagCluster + "=" + tags[providers.TagCluster] + ";" +
		providers.TagService + "=" + tags[providers.TagService]
}

// descriptionMarks decodes ruleDescription's format.
func descriptionMarks(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// buildSecurityRule computes the Service's inbound rule without priority:
// allow the source ranges (Internet or VirtualNetwork when none) to the
// backend ports (node ports, or pod ports with pod targets) in the VNet.
func buildSecurityRule(d *providers.LoadBalancer, pt parts) armnetwork.SecurityRule {
	proto := ""
	var ports []string
	for _, r := range pt.rules {
		rp := string(deref(r.Properties.Protocol))
		switch {
		case proto == "":
			proto = rp
		case proto != rp:
			proto = string(armnetwork.SecurityRuleProtocolAsterisk)
		}
		ports = append(ports, strconv.Itoa(int(deref(r.Properties.BackendPort))))
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	props := &armnetwork.SecurityRulePropertiesFormat{
		Access:                   ptr(armnetwork.SecurityRuleAccessAllow),
		Direction:                ptr(armnetwork.SecurityRuleDirectionInbound),
		Protocol:                 ptr(armnetwork.SecurityRuleProtocol(proto)),
		SourcePortRange:          ptr("*"),
		DestinationAddressPrefix: ptr("VirtualNetwork"),
		DestinationPortRanges:    toPtrSlice(ports),
		Description:              ptr(ruleDescription(d.Key)),
	}
	if len(d.SourceRanges) == 0 {
		src := "Internet"
		if d.Scheme == providers.SchemeInternal {
			src = "VirtualNetwork"
		}
		props.SourceAddressPrefix = ptr(src)
	} else {
		var src []string
		for _, r := range d.SourceRanges {
			src = append(src, r.Masked().String())
		}
		slices.Sort(src)
		props.SourceAddressPrefixes = toPtrSlice(slices.Compact(src))
	}
	return armnetwork.SecurityRule{Properties: props}
}

func securityRuleEqual(have, want *armnetwork.SecurityRule) bool {
	h, w := have.Properties, want.Properties
	sorted := func(s []*string) []string {
		out := fromPtrSlice(s)
		slices.Sort(out)
		return out
	}
	return h != nil &&
		deref(h.Access) == deref(w.Access) &&
		deref(h.Direction) == deref(w.Direction) &&
		deref(h.Protocol) == deref(w.Protocol) &&
		deref(h.SourceAddressPrefix) == deref(w.SourceAddressPrefix) &&
		slices.Equal(sorted(h.SourceAddressPrefixes), sorted(w.SourceAddressPrefixes)) &&
		deref(h.DestinationAddressPrefix) == deref(w.DestinationAddressPrefix) &&
		slices.Equal(sorted(h.DestinationPortRanges), sorted(w.DestinationPortRanges)) &&
		deref(h.Description) == deref(w.Description)
}

// ensureSecurityRule creates or updates the Service's NSG rule. A new rule
// takes the lowest inbound priority from firstRulePriority up that no rule
// holds; an existing one keeps its priority.
func (p *Provider) ensureSecurityRule(ctx context.Context, d *providers.LoadBalancer, pt parts) error {
	if p.opts.SecurityGroupName == "" {
		return nil
	}
	rg, nsg, name := p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName, pt.base
	want := buildSecurityRule(d, pt)
	resp, err := p.rules.Get(ctx, rg, nsg, name, nil)
	var header map[string][]string
	switch {
	case err == nil:
		if !providers.Owns(descriptionMarks(deref(resp.Properties.Description)), d.Key) {
			return &providers.NotOwnedError{Kind: "securityRule", ID: p.securityRuleID(name)}
		}
		if securityRuleEqual(&resp.SecurityRule, &want) {
			return nil
		}
		want.Properties.Priority = resp.Properties.Priority
		header = map[string][]string{"If-Match": {deref(resp.Etag)}}
	case isNotFound(err):
		prio, err := p.reservePriority(ctx)
		if err != nil {
			return err
		}
		defer p.releasePriority(prio)
		want.Properties.Priority = ptr(prio)
		header = map[string][]string{"If-None-Match": {"*"}}
	default:
		return classify("reading security rule "+name, err)
	}
	logr.FromContextOrDiscard(ctx).Info("Writing security rule", "securityRule", name, "priority", deref(want.Properties.Priority))
	poller, err := p.rules.BeginCreateOrUpdate(policy.WithHTTPHeader(ctx, header), rg, nsg, name, want, nil)
	if err != nil {
		return classify("writing security rule "+name, err)
	}
	if _, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions()); err != nil {
		return classify("writing security rule "+name, err)
	}
	return nil
}

// reservePriority picks the lowest inbound priority that neither a rule in
// the NSG nor a rule being created by this provider holds. New rules are
// written concurrently; only the choice of priority is serialized.
func (p *Provider) reservePriority(ctx context.Context) (int32, error) {
	p.nsgMu.Lock()
	defer p.nsgMu.Unlock()
	used := map[int32]bool{}
	for prio := range p.reserved {
		used[prio] = true
	}
	pager := p.rules.NewListPager(p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return 0, classify("listing security rules", err)
		}
		for _, r := range page.Value {
			if r != nil && r.Properties != nil && deref(r.Properties.Direction) == armnetwork.SecurityRuleDirectionInbound {
				used[deref(r.Properties.Priority)] = true
			}
		}
	}
	for prio := int32(firstRulePriority); prio <= 4096; prio++ {
		if !used[prio] {
			p.reserved[prio] = true
			return prio, nil
		}
	}
	return 0, providers.Configf("SecurityGroupFull", "network security group %s has no free inbound priority from %d to 4096", p.opts.SecurityGroupName, firstRulePriority)
}

// releasePriority ends a reservation once the rule exists (or failed).
func (p *Provider) releasePriority(prio int32) {
	p.nsgMu.Lock()
	defer p.nsgMu.Unlock()
	delete(p.reserved, prio)
}

// deleteSecurityRule deletes key's NSG rule when its description carries
// key's marks.
func (p *Provider) deleteSecurityRule(ctx context.Context, key providers.Key) error {
	if p.opts.SecurityGroupName == "" {
		return nil
	}
	rg, nsg, name := p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName, ResourceName(key)
	resp, err := p.rules.Get(ctx, rg, nsg, name, nil)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return classify("reading security rule "+name, err)
	}
	if resp.Properties == nil || !providers.Owns(descriptionMarks(deref(resp.Properties.Description)), key) {
		return nil
	}
	logr.FromContextOrDiscard(ctx).Info("Deleting security rule", "securityRule", name)
	poller, err := p.rules.BeginDelete(policy.WithHTTPHeader(ctx, map[string][]string{"If-Match": {deref(resp.Etag)}}), rg, nsg, name, nil)
	if err != nil {
		return classify("deleting security rule "+name, err)
	}
	if _, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions()); err != nil {
		return classify("deleting security rule "+name, err)
	}
	return nil
}

func toPtrSlice(s []string) []*string {
	out := make([]*string, len(s))
	for i := range s {
		out[i] = ptr(s[i])
	}
	return out
}

func fromPtrSlice(s []*string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		out = append(out, deref(v))
	}
	return out
}
