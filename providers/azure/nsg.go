package azure

import (
	"context"
	"slices"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/providers"
)

// Security rules cannot carry tags: Portico writes its ownership marks into
// the rule's description (see marks.go). A rule under Portico's name whose
// description lacks them is someone else's and is never modified or deleted.

// First priority Portico tries for its NSG rules; lower numbers are left to
// the cluster's own rules.
const firstRulePriority = 500

func (p *Provider) securityRuleID(base string) string {
	return armID(p.opts.SubscriptionID, p.opts.SecurityGroupResourceGroup, "networkSecurityGroups", p.opts.SecurityGroupName) + "/securityRules/" + base
}

// Suffixes of a Service's further NSG rules: the deny rule that shuts out
// every source the ranges do not name, and the rule that keeps admitting the
// load balancer's health probes past it.
const (
	denyRuleSuffix  = "-deny"
	probeRuleSuffix = "-probe"
)

// namedRule is one security rule a Service needs, in priority order.
type namedRule struct {
	name string
	rule armnetwork.SecurityRule
}

// buildSecurityRules computes the Service's inbound rules without
// priorities, in the order their priorities must ascend:
//
//   - base: allow the source ranges (Internet, or VirtualNetwork for an
//     internal load balancer, when none) to the Service's own backends only
//     (the pool's node or pod IPs; rules have floating IP off, so packets
//     reach the backend addressed to it) on the backend ports;
//   - with source ranges, base-probe: allow the AzureLoadBalancer tag (the
//     health probes) to the backends on the probe port;
//   - with source ranges, base-deny: deny every other source to the same
//     backends and ports. Without it the NSG's default AllowVnetInBound
//     (priority 65000) admits the whole virtual network, and for an
//     internal load balancer that is every client
//     (https://learn.microsoft.com/azure/virtual-network/network-security-groups-overview#default-security-rules).
//     cloud-provider-azure's deny-all-except rule is the same idea
//     (service.beta.kubernetes.io/azure-deny-all-except-load-balancer-source-ranges).
//
// It returns nil when the Service has no backend yet: there is nothing to
// admit, and no rule is ever scoped wider than its backends.
func buildSecurityRules(d *providers.LoadBalancer, pt parts) []namedRule {
	var dst []string
	if pt.pool != nil && pt.pool.Properties != nil {
		for _, a := range pt.pool.Properties.LoadBalancerBackendAddresses {
			if a.Properties != nil && deref(a.Properties.IPAddress) != "" {
				dst = append(dst, deref(a.Properties.IPAddress))
			}
		}
	}
	if len(dst) == 0 {
		return nil
	}
	slices.Sort(dst)
	dst = slices.Compact(dst)
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
	rule := func(access armnetwork.SecurityRuleAccess, proto string, ports []string) armnetwork.SecurityRule {
		return armnetwork.SecurityRule{Properties: &armnetwork.SecurityRulePropertiesFormat{
			Access:                     ptr(access),
			Direction:                  ptr(armnetwork.SecurityRuleDirectionInbound),
			Protocol:                   ptr(armnetwork.SecurityRuleProtocol(proto)),
			SourcePortRange:            ptr("*"),
			DestinationAddressPrefixes: toPtrSlice(dst),
			DestinationPortRanges:      toPtrSlice(ports),
			Description:                ptr(ruleDescription(d.Key)),
		}}
	}
	allow := rule(armnetwork.SecurityRuleAccessAllow, proto, ports)
	if len(d.SourceRanges) == 0 {
		src := "Internet"
		if d.Scheme == providers.SchemeInternal {
			src = "VirtualNetwork"
		}
		allow.Properties.SourceAddressPrefix = ptr(src)
		return []namedRule{{pt.base, allow}}
	}
	var src []string
	for _, r := range d.SourceRanges {
		src = append(src, r.Masked().String())
	}
	slices.Sort(src)
	allow.Properties.SourceAddressPrefixes = toPtrSlice(slices.Compact(src))
	out := []namedRule{{pt.base, allow}}
	if pt.probe != nil && pt.probe.Properties != nil {
		probe := rule(armnetwork.SecurityRuleAccessAllow, string(armnetwork.SecurityRuleProtocolTCP), []string{strconv.Itoa(int(deref(pt.probe.Properties.Port)))})
		probe.Properties.SourceAddressPrefix = ptr("AzureLoadBalancer")
		out = append(out, namedRule{pt.base + probeRuleSuffix, probe})
	}
	deny := rule(armnetwork.SecurityRuleAccessDeny, string(armnetwork.SecurityRuleProtocolAsterisk), ports)
	deny.Properties.SourceAddressPrefix = ptr("*")
	return append(out, namedRule{pt.base + denyRuleSuffix, deny})
}

// securityRuleNames are every rule name a Service's rules may use.
func securityRuleNames(base string) []string {
	return []string{base, base + probeRuleSuffix, base + denyRuleSuffix}
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
		slices.Equal(sorted(h.DestinationAddressPrefixes), sorted(w.DestinationAddressPrefixes)) &&
		deref(h.SourcePortRange) == deref(w.SourcePortRange) &&
		slices.Equal(sorted(h.DestinationPortRanges), sorted(w.DestinationPortRanges)) &&
		deref(h.Description) == deref(w.Description)
}

// ensureSecurityRules makes the Service's NSG rules match
// buildSecurityRules: each rule's priority is above the previous one's (the
// deny rule comes after the allow rules), rules it no longer needs are
// deleted, and a rule under its name without its marks is never touched.
func (p *Provider) ensureSecurityRules(ctx context.Context, d *providers.LoadBalancer, pt parts) error {
	if p.opts.SecurityGroupName == "" {
		return nil
	}
	want := buildSecurityRules(d, pt)
	if want == nil {
		logr.FromContextOrDiscard(ctx).V(1).Info("No backends yet; security rules left as they are")
		return nil
	}
	keep := map[string]bool{}
	after := int32(firstRulePriority - 1)
	for _, r := range want {
		keep[r.name] = true
		prio, err := p.ensureSecurityRule(ctx, d.Key, r.name, r.rule, after)
		if err != nil {
			return err
		}
		after = prio
	}
	for _, name := range securityRuleNames(pt.base) {
		if !keep[name] {
			if err := p.deleteSecurityRule(ctx, d.Key, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensureSecurityRule creates or updates one rule with a priority above
// after and returns its priority. A new rule takes the lowest free inbound
// priority above after; an existing one keeps its priority unless it is not
// above after.
func (p *Provider) ensureSecurityRule(ctx context.Context, key providers.Key, name string, want armnetwork.SecurityRule, after int32) (int32, error) {
	rg, nsg := p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName
	resp, err := p.rules.Get(ctx, rg, nsg, name, nil)
	var header map[string][]string
	reserve := false
	switch {
	case err == nil:
		if resp.Properties == nil || !owns(descriptionMarks(deref(resp.Properties.Description)), key) {
			return 0, &providers.NotOwnedError{Kind: "securityRule", ID: p.securityRuleID(name)}
		}
		prio := deref(resp.Properties.Priority)
		if prio > after && securityRuleEqual(&resp.SecurityRule, &want) {
			return prio, nil
		}
		want.Properties.Priority = ptr(prio)
		reserve = prio <= after
		header = map[string][]string{"If-Match": {deref(resp.Etag)}}
	case isNotFound(err):
		reserve = true
		header = map[string][]string{"If-None-Match": {"*"}}
	default:
		return 0, classify("reading security rule "+name, err)
	}
	if reserve {
		prio, err := p.reservePriority(ctx, after)
		if err != nil {
			return 0, err
		}
		defer p.releasePriority(prio)
		want.Properties.Priority = ptr(prio)
	}
	logr.FromContextOrDiscard(ctx).Info("Writing security rule", "securityRule", name, "priority", deref(want.Properties.Priority))
	poller, err := p.rules.BeginCreateOrUpdate(policy.WithHTTPHeader(ctx, header), rg, nsg, name, want, nil)
	if err != nil {
		return 0, classify("writing security rule "+name, err)
	}
	if _, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions()); err != nil {
		return 0, classify("writing security rule "+name, err)
	}
	return deref(want.Properties.Priority), nil
}

// reservePriority picks the lowest inbound priority above after that neither
// a rule in the NSG nor a rule being created by this provider holds. New rules are
// written concurrently; only the choice of priority is serialized.
func (p *Provider) reservePriority(ctx context.Context, after int32) (int32, error) {
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
	for prio := max(int32(firstRulePriority), after+1); prio <= 4096; prio++ {
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

// deleteSecurityRules deletes every NSG rule of key that carries key's marks.
func (p *Provider) deleteSecurityRules(ctx context.Context, key providers.Key) error {
	if p.opts.SecurityGroupName == "" {
		return nil
	}
	// The allow rule goes first and the deny rule last, so that no moment
	// admits more than the Service asked for.
	for _, name := range securityRuleNames(ResourceName(key)) {
		if err := p.deleteSecurityRule(ctx, key, name); err != nil {
			return err
		}
	}
	return nil
}

// deleteSecurityRule deletes the named NSG rule when its description carries
// key's marks.
func (p *Provider) deleteSecurityRule(ctx context.Context, key providers.Key, name string) error {
	rg, nsg := p.opts.SecurityGroupResourceGroup, p.opts.SecurityGroupName
	resp, err := p.rules.Get(ctx, rg, nsg, name, nil)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return classify("reading security rule "+name, err)
	}
	if resp.Properties == nil || !owns(descriptionMarks(deref(resp.Properties.Description)), key) {
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
