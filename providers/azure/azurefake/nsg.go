package azurefake

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
)

// Packet is one inbound flow to evaluate against a network security group.
type Packet struct {
	Source netip.Addr
	// SourceTags are the service tags the source belongs to, e.g.
	// "VirtualNetwork" for a client in the VNet, "Internet" for one outside,
	// "AzureLoadBalancer" for the health probes (168.63.129.16).
	SourceTags  []string
	Destination netip.Addr
	// DestinationTags likewise, e.g. "VirtualNetwork" for a node.
	DestinationTags []string
	Protocol        armnetwork.SecurityRuleProtocol // Tcp or Udp
	Port            int32
}

// defaultInboundRules are the rules every NSG has below the custom ones
// (https://learn.microsoft.com/azure/virtual-network/network-security-groups-overview#default-security-rules):
// AllowVNetInBound 65000, AllowAzureLoadBalancerInBound 65001,
// DenyAllInBound 65500.
var defaultInboundRules = []*armnetwork.SecurityRule{
	{Name: ptr("AllowVnetInBound"), Properties: &armnetwork.SecurityRulePropertiesFormat{Priority: ptr(int32(65000)), Access: ptr(armnetwork.SecurityRuleAccessAllow),
		Direction: ptr(armnetwork.SecurityRuleDirectionInbound), Protocol: ptr(armnetwork.SecurityRuleProtocolAsterisk),
		SourceAddressPrefix: ptr("VirtualNetwork"), DestinationAddressPrefix: ptr("VirtualNetwork"), DestinationPortRange: ptr("*")}},
	{Name: ptr("AllowAzureLoadBalancerInBound"), Properties: &armnetwork.SecurityRulePropertiesFormat{Priority: ptr(int32(65001)), Access: ptr(armnetwork.SecurityRuleAccessAllow),
		Direction: ptr(armnetwork.SecurityRuleDirectionInbound), Protocol: ptr(armnetwork.SecurityRuleProtocolAsterisk),
		SourceAddressPrefix: ptr("AzureLoadBalancer"), DestinationAddressPrefix: ptr("*"), DestinationPortRange: ptr("*")}},
	{Name: ptr("DenyAllInBound"), Properties: &armnetwork.SecurityRulePropertiesFormat{Priority: ptr(int32(65500)), Access: ptr(armnetwork.SecurityRuleAccessDeny),
		Direction: ptr(armnetwork.SecurityRuleDirectionInbound), Protocol: ptr(armnetwork.SecurityRuleProtocolAsterisk),
		SourceAddressPrefix: ptr("*"), DestinationAddressPrefix: ptr("*"), DestinationPortRange: ptr("*")}},
}

// EvaluateInbound returns the access the NSG nsgID grants pkt and the name of
// the deciding rule: inbound rules, the custom ones and then the defaults,
// are processed in priority order and the first match decides
// (https://learn.microsoft.com/azure/virtual-network/network-security-group-how-it-works).
func (s *Server) EvaluateInbound(nsgID string, pkt Packet) (armnetwork.SecurityRuleAccess, string) {
	s.mu.Lock()
	var rules []*armnetwork.SecurityRule
	prefix := strings.ToLower(nsgID) + "/securityrules/"
	for k, o := range s.objs {
		if r, ok := o.value.(*armnetwork.SecurityRule); ok && strings.HasPrefix(k, prefix) && r.Properties != nil &&
			deref(r.Properties.Direction) == armnetwork.SecurityRuleDirectionInbound {
			rules = append(rules, r)
		}
	}
	s.mu.Unlock()
	sort.Slice(rules, func(i, j int) bool { return deref(rules[i].Properties.Priority) < deref(rules[j].Properties.Priority) })
	for _, r := range append(rules, defaultInboundRules...) {
		if ruleMatches(r.Properties, pkt) {
			return deref(r.Properties.Access), deref(r.Name)
		}
	}
	return armnetwork.SecurityRuleAccessDeny, ""
}

func ruleMatches(rp *armnetwork.SecurityRulePropertiesFormat, pkt Packet) bool {
	if p := deref(rp.Protocol); p != armnetwork.SecurityRuleProtocolAsterisk && !strings.EqualFold(string(p), string(pkt.Protocol)) {
		return false
	}
	return addressMatches(rp.SourceAddressPrefix, rp.SourceAddressPrefixes, pkt.Source, pkt.SourceTags) &&
		addressMatches(rp.DestinationAddressPrefix, rp.DestinationAddressPrefixes, pkt.Destination, pkt.DestinationTags) &&
		portMatches(rp.DestinationPortRange, rp.DestinationPortRanges, pkt.Port)
}

// addressMatches: "*" or "Any" match everything; a service tag matches the
// addresses tagged with it; otherwise a CIDR or a single address.
func addressMatches(one *string, many []*string, a netip.Addr, tags []string) bool {
	list := many
	if one != nil && *one != "" {
		list = append([]*string{one}, many...)
	}
	for _, p := range list {
		v := deref(p)
		switch {
		case v == "*" || strings.EqualFold(v, "Any"):
			return true
		case strings.Contains(v, "/"):
			if pre, err := netip.ParsePrefix(v); err == nil && pre.Contains(a) {
				return true
			}
		default:
			if ip, err := netip.ParseAddr(v); err == nil {
				if ip == a {
					return true
				}
				continue
			}
			for _, t := range tags {
				if strings.EqualFold(t, v) {
					return true
				}
			}
		}
	}
	return false
}

func portMatches(one *string, many []*string, port int32) bool {
	list := many
	if one != nil && *one != "" {
		list = append([]*string{one}, many...)
	}
	for _, p := range list {
		v := deref(p)
		if v == "*" {
			return true
		}
		lo, hi, isRange := strings.Cut(v, "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil && int(port) >= l && int(port) <= h {
			return true
		}
	}
	return false
}
