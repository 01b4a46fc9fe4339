package azurefake

import (
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
)

// The documented rules of Microsoft.Network that the fake enforces on the
// fields Portico writes. Each answers 400 with an ARM error, as Azure does
// when it validates a request. Where the documentation names the error code
// the fake uses it; otherwise the code is the fake's own description of
// the rule (Portico matches codes only for throttling, conflicts and
// quotas, never for these).

// Tag limits
// (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/tag-resources#limitations):
// "Each resource ... can have a maximum of 50 tag name-value pairs", "The
// tag name has a limit of 512 characters and the tag value has a limit of
// 256 characters", "Tag names can't contain these characters: <, >, %, &,
// \, ?, /".
const (
	maxTags        = 50
	maxTagName     = 512
	maxTagValue    = 256
	forbiddenInTag = `<>%&\?/`
)

func validateTags(tags map[string]*string) *armErr {
	if len(tags) > maxTags {
		return badRequest("InvalidTagCount", "The resource has %d tags; at most %d tag name-value pairs are allowed.", len(tags), maxTags)
	}
	for k, v := range tags {
		switch {
		case k == "":
			return badRequest("InvalidTagName", "Tag names cannot be empty.")
		case strings.ContainsAny(k, forbiddenInTag):
			return badRequest("InvalidTagNameCharacters", "The tag names '%s' have reserved characters '<,>,%%,&,\\,?,/' or control characters.", k)
		case len(k) > maxTagName:
			return badRequest("InvalidTagNameLength", "The tag name '%.40s...' exceeds the maximum length of %d characters.", k, maxTagName)
		case len(deref(v)) > maxTagValue:
			return badRequest("InvalidTagValueLength", "The value of tag '%s' exceeds the maximum length of %d characters.", k, maxTagValue)
		}
	}
	return nil
}

// Resource names of Microsoft.Network load balancers and their frontend IP
// configurations, backend pools, probes and load-balancing rules, public IP
// addresses, network security groups and security rules: 1-80 characters,
// alphanumerics, underscores, periods and hyphens; start with an
// alphanumeric; end with an alphanumeric or an underscore
// (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules#microsoftnetwork).
var resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`)

func validateName(typ, name string) *armErr {
	if resourceNameRE.MatchString(name) {
		return nil
	}
	return badRequest("InvalidResourceName", "Resource name %s is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'. (%s)", name, typ)
}

// Load balancer limits for the Standard SKU
// (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/azure-subscription-service-limits#load-balancer):
// 600 frontend IP configurations, 1,500 rules (load-balancing and inbound
// NAT) per load balancer, 5,000 IP configurations per backend pool.
const (
	maxFrontends       = 600
	maxRules           = 1500
	maxBackendsPerPool = 5000
)

// Network security group limits
// (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/azure-subscription-service-limits#networking-limits):
// 1,000 security rules per network security group. A rule's description is
// "Restricted to 140 chars" (REST API, SecurityRulePropertiesFormat.description,
// https://learn.microsoft.com/en-us/rest/api/virtualnetwork/security-rules/create-or-update#securityrule).
const (
	maxSecurityRules   = 1000
	maxRuleDescription = 140
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.FrontendsPerLoadBalancer, maxFrontends)
	def(&l.RulesPerLoadBalancer, maxRules)
	def(&l.AddressesPerPool, maxBackendsPerPool)
	def(&l.RulesPerSecurityGroup, maxSecurityRules)
	return l
}

// validateLoadBalancerRules checks what stampLoadBalancer does not: names,
// limits, and backend addresses.
func validateLoadBalancerRules(lb *armnetwork.LoadBalancer, lim Limits) *armErr {
	if err := validateTags(lb.Tags); err != nil {
		return err
	}
	props := lb.Properties
	if props == nil {
		return nil
	}
	if n := len(props.FrontendIPConfigurations); n > lim.FrontendsPerLoadBalancer {
		return badRequest("LoadBalancerFrontendIPConfigurationCountLimitReached", "Load balancer has %d frontend IP configurations; the limit is %d.", n, lim.FrontendsPerLoadBalancer)
	}
	if n := len(props.LoadBalancingRules) + len(props.InboundNatRules); n > lim.RulesPerLoadBalancer {
		return badRequest("LoadBalancerRuleCountLimitReached", "Load balancer has %d rules; the limit is %d.", n, lim.RulesPerLoadBalancer)
	}
	for _, fe := range props.FrontendIPConfigurations {
		if err := validateName("frontendIPConfigurations", deref(fe.Name)); err != nil {
			return err
		}
	}
	for _, pr := range props.Probes {
		if err := validateName("probes", deref(pr.Name)); err != nil {
			return err
		}
	}
	for _, r := range props.LoadBalancingRules {
		if err := validateName("loadBalancingRules", deref(r.Name)); err != nil {
			return err
		}
	}
	for _, bp := range props.BackendAddressPools {
		if err := validateName("backendAddressPools", deref(bp.Name)); err != nil {
			return err
		}
		if bp.Properties == nil {
			continue
		}
		if n := len(bp.Properties.LoadBalancerBackendAddresses); n > lim.AddressesPerPool {
			return badRequest("LoadBalancerBackendAddressPoolSizeLimitReached", "Backend pool %s has %d addresses; the limit is %d.", deref(bp.Name), n, lim.AddressesPerPool)
		}
		// An IP-based backend address is an IP address in a virtual
		// network: "configure the pool by IP address and virtual network
		// ID" (https://learn.microsoft.com/en-us/azure/load-balancer/backend-pool-management#configure-backend-pool-by-ip-address-and-virtual-network).
		for _, a := range bp.Properties.LoadBalancerBackendAddresses {
			if a == nil || a.Properties == nil || deref(a.Properties.IPAddress) == "" {
				continue
			}
			if a.Properties.VirtualNetwork == nil && a.Properties.Subnet == nil {
				return badRequest("BackendAddressMissingVirtualNetwork", "Backend address %s (%s) of backend pool %s has an IP address but no virtual network.", deref(a.Name), deref(a.Properties.IPAddress), deref(bp.Name))
			}
		}
	}
	return nil
}

// validateSecurityRuleFields checks the rule's own fields against the
// documented limits.
func validateSecurityRuleFields(name string, rule *armnetwork.SecurityRule) *armErr {
	if err := validateName("securityRules", name); err != nil {
		return err
	}
	if rule.Properties != nil && len(deref(rule.Properties.Description)) > maxRuleDescription {
		return badRequest("SecurityRuleDescriptionTooLong", "Security rule %s has a description of %d characters; it is restricted to %d.", name, len(deref(rule.Properties.Description)), maxRuleDescription)
	}
	return nil
}

// securityRuleCount counts the rules of the NSG whose rules live under prefix.
func (s *Server) securityRuleCount(prefix string) int {
	n := 0
	for k, o := range s.objs {
		if o.kind == KindSecurityRule && strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}
