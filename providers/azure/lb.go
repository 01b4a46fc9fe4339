package azure

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"

	"github.com/portico-lb/portico/providers"
)

// A Service's parts in the shared load balancer. Load balancer children carry
// no tags in Azure, so a Service's parts are recognised by name: the frontend,
// backend pool and probe are named base, the rules base-<protocol>-<port>,
// where base is ResourceName(key), a hash of cluster, namespace and name.
// They live only in a load balancer that carries Portico's cluster tags, and
// nothing else in it is ever touched.
type parts struct {
	base     string
	frontend *armnetwork.FrontendIPConfiguration
	pool     *armnetwork.BackendAddressPool
	probe    *armnetwork.Probe
	rules    []*armnetwork.LoadBalancingRule
}

// frontendSpec says where a Service's frontend address comes from.
type frontendSpec struct {
	// PublicIPID for an external frontend.
	PublicIPID string
	// SubnetID and optional static PrivateIP for an internal frontend.
	SubnetID  string
	PrivateIP string
}

// partsInput is everything buildParts needs.
type partsInput struct {
	LoadBalancerID string
	VNetID         string
	Desired        *providers.LoadBalancer
	Settings       Settings
	Frontend       frontendSpec
	// DisableOutboundSNAT sets disableOutboundSnat on the rules: a public
	// load balancer whose backends have outbound connectivity already.
	DisableOutboundSNAT bool
}

// kubeProxyHealthPort is kube-proxy's healthz port, probed for
// externalTrafficPolicy Cluster (as cloud-provider-azure's shared probe does).
const kubeProxyHealthPort = 10256

// buildParts computes a Service's desired load balancer children. It is pure.
func buildParts(in partsInput) (parts, error) {
	d := in.Desired
	base := ResourceName(d.Key)
	child := func(kind, name string) *armnetwork.SubResource {
		return &armnetwork.SubResource{ID: ptr(in.LoadBalancerID + "/" + kind + "/" + name)}
	}
	p := parts{base: base}

	fe := &armnetwork.FrontendIPConfiguration{Name: ptr(base), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{}}
	switch {
	case in.Frontend.PublicIPID != "":
		fe.Properties.PublicIPAddress = &armnetwork.PublicIPAddress{ID: ptr(in.Frontend.PublicIPID)}
	case in.Frontend.PrivateIP != "":
		fe.Properties.Subnet = &armnetwork.Subnet{ID: ptr(in.Frontend.SubnetID)}
		fe.Properties.PrivateIPAllocationMethod = ptr(armnetwork.IPAllocationMethodStatic)
		fe.Properties.PrivateIPAddress = ptr(in.Frontend.PrivateIP)
	default:
		fe.Properties.Subnet = &armnetwork.Subnet{ID: ptr(in.Frontend.SubnetID)}
		fe.Properties.PrivateIPAllocationMethod = ptr(armnetwork.IPAllocationMethodDynamic)
	}
	p.frontend = fe

	var addrs []*armnetwork.LoadBalancerBackendAddress
	if d.TargetPods {
		for _, ep := range d.Endpoints {
			if ep.Ready && ep.IP.Is4() {
				addrs = append(addrs, backendAddress(ep.IP.String(), ep.IP.String(), in.VNetID))
			}
		}
	} else {
		for _, n := range d.Nodes {
			for _, ip := range n.InternalIPs {
				if ip.Is4() {
					addrs = append(addrs, backendAddress(n.Name, ip.String(), in.VNetID))
					break
				}
			}
		}
	}
	slices.SortFunc(addrs, func(a, b *armnetwork.LoadBalancerBackendAddress) int { return cmp.Compare(*a.Name, *b.Name) })
	addrs = slices.CompactFunc(addrs, func(a, b *armnetwork.LoadBalancerBackendAddress) bool { return *a.Name == *b.Name })
	p.pool = &armnetwork.BackendAddressPool{Name: ptr(base), Properties: &armnetwork.BackendAddressPoolPropertiesFormat{LoadBalancerBackendAddresses: addrs}}

	probe, err := buildProbe(d, in.Settings)
	if err != nil {
		return parts{}, err
	}
	probe.Name = ptr(base)
	p.probe = probe

	tcpReset := in.Settings.TCPReset == nil || *in.Settings.TCPReset
	idle := in.Settings.IdleTimeoutMinutes
	if idle == 0 {
		idle = 4
	}
	distribution := armnetwork.LoadDistributionDefault
	if d.SessionAffinityTimeout > 0 {
		distribution = armnetwork.LoadDistributionSourceIP
	}
	for _, port := range d.Ports {
		var proto armnetwork.TransportProtocol
		switch port.Protocol {
		case providers.TCP:
			proto = armnetwork.TransportProtocolTCP
		case providers.UDP:
			proto = armnetwork.TransportProtocolUDP
		default:
			return parts{}, providers.Configf("UnsupportedProtocol", "port %d: Azure load balancers carry TCP and UDP, not %s", port.Port, port.Protocol)
		}
		backend := port.NodePort
		if d.TargetPods {
			backend = port.TargetPort
		}
		if backend == 0 {
			return parts{}, providers.Configf("NoBackendPort", "port %d has no node port (allocateLoadBalancerNodePorts: false needs pod targets with a numeric target port)", port.Port)
		}
		rp := &armnetwork.LoadBalancingRulePropertiesFormat{
			FrontendIPConfiguration: child("frontendIPConfigurations", base),
			BackendAddressPool:      child("backendAddressPools", base),
			Probe:                   child("probes", base),
			Protocol:                ptr(proto),
			FrontendPort:            ptr(port.Port),
			BackendPort:             ptr(backend),
			EnableFloatingIP:        ptr(false),
			IdleTimeoutInMinutes:    ptr(idle),
			LoadDistribution:        ptr(distribution),
		}
		if proto == armnetwork.TransportProtocolTCP {
			rp.EnableTCPReset = ptr(tcpReset)
		}
		if in.DisableOutboundSNAT {
			rp.DisableOutboundSnat = ptr(true)
		}
		p.rules = append(p.rules, &armnetwork.LoadBalancingRule{Name: ptr(ruleName(base, port)), Properties: rp})
	}
	slices.SortFunc(p.rules, func(a, b *armnetwork.LoadBalancingRule) int { return cmp.Compare(*a.Name, *b.Name) })
	for i := 1; i < len(p.rules); i++ {
		if *p.rules[i].Name == *p.rules[i-1].Name {
			return parts{}, providers.Configf("DuplicatePort", "the Service lists %s twice", *p.rules[i].Name)
		}
	}
	return p, nil
}

func ruleName(base string, port providers.Port) string {
	return fmt.Sprintf("%s-%s-%d", base, strings.ToLower(string(port.Protocol)), port.Port)
}

func backendAddress(name, ip, vnetID string) *armnetwork.LoadBalancerBackendAddress {
	props := &armnetwork.LoadBalancerBackendAddressPropertiesFormat{IPAddress: ptr(ip)}
	if vnetID != "" {
		props.VirtualNetwork = &armnetwork.SubResource{ID: ptr(vnetID)}
	}
	return &armnetwork.LoadBalancerBackendAddress{Name: ptr(name), Properties: props}
}

// buildProbe picks the health probe: kube-proxy's healthz for Cluster,
// healthCheckNodePort for Local, a TCP check of the target port for pod
// targets; annotations override each field.
func buildProbe(d *providers.LoadBalancer, s Settings) (*armnetwork.Probe, error) {
	proto, port, path := armnetwork.ProbeProtocolHTTP, int32(kubeProxyHealthPort), "/healthz"
	switch {
	case d.TargetPods:
		proto, path, port = armnetwork.ProbeProtocolTCP, "", 0
		for _, p := range d.Ports {
			if p.Protocol == providers.TCP && p.TargetPort != 0 {
				port = p.TargetPort
				break
			}
		}
	case d.TrafficPolicy == providers.TrafficPolicyLocal && d.HealthCheckNodePort != 0:
		port = d.HealthCheckNodePort
	}
	if s.ProbeProtocol != "" {
		proto = armnetwork.ProbeProtocol(s.ProbeProtocol)
		if proto == armnetwork.ProbeProtocolTCP {
			path = ""
		} else if path == "" {
			path = "/"
		}
	}
	if s.ProbePort != 0 {
		port = s.ProbePort
	}
	if s.ProbeRequestPath != "" {
		path = s.ProbeRequestPath
	}
	if port == 0 {
		return nil, providers.Configf("NoProbePort", "pod targets without a TCP target port need %s", AnnotationProbePort)
	}
	interval, threshold := int32(5), int32(2)
	if s.ProbeInterval != 0 {
		interval = s.ProbeInterval
	}
	if s.ProbeThreshold != 0 {
		threshold = s.ProbeThreshold
	}
	props := &armnetwork.ProbePropertiesFormat{Protocol: ptr(proto), Port: ptr(port), IntervalInSeconds: ptr(interval), ProbeThreshold: ptr(threshold)}
	if proto != armnetwork.ProbeProtocolTCP {
		props.RequestPath = ptr(path)
	}
	return &armnetwork.Probe{Properties: props}, nil
}

// ownsChild reports whether a load balancer child named name is one of base's parts.
func ownsChild(base, name string) bool {
	return name == base || strings.HasPrefix(name, base+"-")
}

// applyParts puts a Service's parts into lb, keeping every other child as
// it is and leaving equal parts untouched. It returns whether lb changed and
// the public IP the Service's frontend referenced before.
func applyParts(lb *armnetwork.LoadBalancer, p parts) (changed bool, prevPublicIP string) {
	if lb.Properties == nil {
		lb.Properties = &armnetwork.LoadBalancerPropertiesFormat{}
	}
	props := lb.Properties
	for _, fe := range props.FrontendIPConfigurations {
		if deref(fe.Name) == p.base && fe.Properties != nil && fe.Properties.PublicIPAddress != nil {
			prevPublicIP = deref(fe.Properties.PublicIPAddress.ID)
		}
	}
	// Rules go first out and last in, so that no rule ever references a
	// child that is not there.
	var c bool
	props.LoadBalancingRules, c = upsertChildren(props.LoadBalancingRules, p.base, p.rules, ruleName0, ruleEqual)
	changed = changed || c
	props.FrontendIPConfigurations, c = upsertChildren(props.FrontendIPConfigurations, p.base, []*armnetwork.FrontendIPConfiguration{p.frontend}, feName, frontendEqual)
	changed = changed || c
	props.BackendAddressPools, c = upsertChildren(props.BackendAddressPools, p.base, []*armnetwork.BackendAddressPool{p.pool}, poolName, poolEqual)
	changed = changed || c
	props.Probes, c = upsertChildren(props.Probes, p.base, []*armnetwork.Probe{p.probe}, probeName, probeEqual)
	changed = changed || c
	return changed, prevPublicIP
}

// removeParts takes a Service's parts out of lb. It returns whether lb
// changed and the public IP the removed frontend referenced.
func removeParts(lb *armnetwork.LoadBalancer, base string) (changed bool, prevPublicIP string) {
	if lb.Properties == nil {
		return false, ""
	}
	props := lb.Properties
	for _, fe := range props.FrontendIPConfigurations {
		if deref(fe.Name) == base && fe.Properties != nil && fe.Properties.PublicIPAddress != nil {
			prevPublicIP = deref(fe.Properties.PublicIPAddress.ID)
		}
	}
	var c bool
	props.LoadBalancingRules, c = upsertChildren[*armnetwork.LoadBalancingRule](props.LoadBalancingRules, base, nil, ruleName0, ruleEqual)
	changed = changed || c
	props.FrontendIPConfigurations, c = upsertChildren[*armnetwork.FrontendIPConfiguration](props.FrontendIPConfigurations, base, nil, feName, frontendEqual)
	changed = changed || c
	props.BackendAddressPools, c = upsertChildren[*armnetwork.BackendAddressPool](props.BackendAddressPools, base, nil, poolName, poolEqual)
	changed = changed || c
	props.Probes, c = upsertChildren[*armnetwork.Probe](props.Probes, base, nil, probeName, probeEqual)
	changed = changed || c
	return changed, prevPublicIP
}

// upsertChildren replaces base's children in have with want: equal ones are
// kept verbatim, changed ones replaced in place, missing ones appended, and
// base's children not in want dropped. Children of others are untouched.
func upsertChildren[T any](have []T, base string, want []T, name func(T) string, equal func(have, want T) bool) ([]T, bool) {
	wanted := map[string]T{}
	for _, w := range want {
		wanted[name(w)] = w
	}
	changed := false
	out := make([]T, 0, len(have)+len(want))
	seen := map[string]bool{}
	for _, h := range have {
		n := name(h)
		if !ownsChild(base, n) {
			out = append(out, h)
			continue
		}
		w, ok := wanted[n]
		switch {
		case !ok || seen[n]:
			changed = true
		case equal(h, w):
			out = append(out, h)
		default:
			out = append(out, w)
			changed = true
		}
		seen[n] = true
	}
	for _, w := range want {
		if !seen[name(w)] {
			out = append(out, w)
			changed = true
		}
	}
	return out, changed
}

func ruleName0(r *armnetwork.LoadBalancingRule) string    { return deref(r.Name) }
func feName(f *armnetwork.FrontendIPConfiguration) string { return deref(f.Name) }
func poolName(p *armnetwork.BackendAddressPool) string    { return deref(p.Name) }
func probeName(p *armnetwork.Probe) string                { return deref(p.Name) }
func subID(s *armnetwork.SubResource) string {
	if s == nil {
		return ""
	}
	return strings.ToLower(deref(s.ID))
}

func frontendEqual(have, want *armnetwork.FrontendIPConfiguration) bool {
	h, w := have.Properties, want.Properties
	if h == nil {
		return false
	}
	pip := func(p *armnetwork.FrontendIPConfigurationPropertiesFormat) string {
		if p.PublicIPAddress == nil {
			return ""
		}
		return strings.ToLower(deref(p.PublicIPAddress.ID))
	}
	subnet := func(p *armnetwork.FrontendIPConfigurationPropertiesFormat) string {
		if p.Subnet == nil {
			return ""
		}
		return strings.ToLower(deref(p.Subnet.ID))
	}
	if pip(h) != pip(w) || subnet(h) != subnet(w) {
		return false
	}
	if deref(w.PrivateIPAllocationMethod) == armnetwork.IPAllocationMethodStatic {
		return deref(h.PrivateIPAllocationMethod) == armnetwork.IPAllocationMethodStatic && deref(h.PrivateIPAddress) == deref(w.PrivateIPAddress)
	}
	return deref(h.PrivateIPAllocationMethod) != armnetwork.IPAllocationMethodStatic
}

func poolEqual(have, want *armnetwork.BackendAddressPool) bool {
	key := func(p *armnetwork.BackendAddressPool) []string {
		var out []string
		if p.Properties == nil {
			return out
		}
		for _, a := range p.Properties.LoadBalancerBackendAddresses {
			if a == nil || a.Properties == nil {
				continue
			}
			vnet := ""
			if a.Properties.VirtualNetwork != nil {
				vnet = strings.ToLower(deref(a.Properties.VirtualNetwork.ID))
			}
			out = append(out, deref(a.Name)+"|"+deref(a.Properties.IPAddress)+"|"+vnet)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(have), key(want))
}

func probeEqual(have, want *armnetwork.Probe) bool {
	h, w := have.Properties, want.Properties
	return h != nil &&
		deref(h.Protocol) == deref(w.Protocol) &&
		deref(h.Port) == deref(w.Port) &&
		deref(h.RequestPath) == deref(w.RequestPath) &&
		deref(h.IntervalInSeconds) == deref(w.IntervalInSeconds) &&
		deref(h.ProbeThreshold) == deref(w.ProbeThreshold)
}

func ruleEqual(have, want *armnetwork.LoadBalancingRule) bool {
	h, w := have.Properties, want.Properties
	return h != nil &&
		subID(h.FrontendIPConfiguration) == subID(w.FrontendIPConfiguration) &&
		subID(h.BackendAddressPool) == subID(w.BackendAddressPool) &&
		subID(h.Probe) == subID(w.Probe) &&
		deref(h.Protocol) == deref(w.Protocol) &&
		deref(h.FrontendPort) == deref(w.FrontendPort) &&
		deref(h.BackendPort) == deref(w.BackendPort) &&
		deref(h.EnableFloatingIP) == deref(w.EnableFloatingIP) &&
		deref(h.EnableTCPReset) == deref(w.EnableTCPReset) &&
		deref(h.IdleTimeoutInMinutes) == deref(w.IdleTimeoutInMinutes) &&
		deref(h.DisableOutboundSnat) == deref(w.DisableOutboundSnat) &&
		cmp.Or(deref(h.LoadDistribution), armnetwork.LoadDistributionDefault) == deref(w.LoadDistribution)
}

// findFrontend returns base's frontend in lb, or nil.
func findFrontend(lb *armnetwork.LoadBalancer, base string) *armnetwork.FrontendIPConfiguration {
	if lb == nil || lb.Properties == nil {
		return nil
	}
	for _, fe := range lb.Properties.FrontendIPConfigurations {
		if deref(fe.Name) == base {
			return fe
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
