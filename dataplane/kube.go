package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/providers"
)

// defaultAffinityTimeout is Kubernetes' default ClientIP affinity timeout
// (3 hours).
const defaultAffinityTimeout = 10800 * time.Second

// sourceRangesAnnotation is the legacy annotation kube-proxy also honours
// when spec.loadBalancerSourceRanges is empty.
const sourceRangesAnnotation = "service.beta.kubernetes.io/load-balancer-source-ranges"

// FromKubernetes builds the dataplane view of svc from its EndpointSlices
// (slices of other Services are ignored). It reads the load-balancer
// addresses from status.loadBalancer.ingress, the ports, the traffic
// policy, session affinity and source ranges from the spec, and for every
// Service port the endpoints the slices give that port (matched by port
// name and protocol, the way kube-proxy does). Invalid source ranges are a
// *providers.ConfigError: programming the Service without them would open
// it to clients the user meant to keep out.
func FromKubernetes(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) (Service, error) {
	out := Service{
		Key:                 ServiceKey{Namespace: svc.Namespace, Name: svc.Name},
		TrafficPolicy:       Cluster,
		HealthCheckNodePort: uint16(svc.Spec.HealthCheckNodePort),
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		out.TrafficPolicy = Local
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		out.AffinityTimeout = defaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			out.AffinityTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue
		}
		ip, err := netip.ParseAddr(ing.IP)
		if err != nil {
			continue // not an address this node can serve; the status writer's problem
		}
		out.LoadBalancerIPs = append(out.LoadBalancerIPs, ip.Unmap())
	}
	ranges, err := SourceRanges(svc)
	if err != nil {
		return Service{}, err
	}
	out.SourceRanges = ranges

	for _, sp := range svc.Spec.Ports {
		proto, ok := protocolOf(sp.Protocol)
		if !ok || sp.Port <= 0 || sp.Port > 65535 {
			continue
		}
		p := Port{Name: sp.Name, Protocol: proto, Port: uint16(sp.Port)}
		if sp.NodePort > 0 && sp.NodePort <= 65535 {
			p.NodePort = uint16(sp.NodePort)
		}
		p.Endpoints = endpointsFor(svc, &sp, slices)
		out.Ports = append(out.Ports, p)
	}
	return out, nil
}

// SourceRanges parses spec.loadBalancerSourceRanges, or when empty the
// legacy annotation (comma-separated), as kube-proxy does.
func SourceRanges(svc *corev1.Service) ([]netip.Prefix, error) {
	raw := svc.Spec.LoadBalancerSourceRanges
	if len(raw) == 0 {
		if a := strings.TrimSpace(svc.Annotations[sourceRangesAnnotation]); a != "" {
			raw = strings.Split(a, ",")
		}
	}
	var out []netip.Prefix
	for _, r := range raw {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		p, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, providers.Configf("InvalidSourceRange", "service %s/%s: loadBalancerSourceRanges entry %q is not a CIDR: %v", svc.Namespace, svc.Name, r, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func protocolOf(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	case corev1.ProtocolSCTP:
		return SCTP, true
	}
	return "", false
}

func endpointsFor(svc *corev1.Service, sp *corev1.ServicePort, slices []*discoveryv1.EndpointSlice) []Endpoint {
	var out []Endpoint
	seen := map[netip.AddrPort]bool{}
	for _, s := range slices {
		if s == nil || s.Namespace != svc.Namespace || s.Labels[discoveryv1.LabelServiceName] != svc.Name {
			continue
		}
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for _, port := range s.Ports {
			name, proto := "", corev1.ProtocolTCP
			if port.Name != nil {
				name = *port.Name
			}
			if port.Protocol != nil {
				proto = *port.Protocol
			}
			if name != sp.Name || proto != sp.Protocol && !(sp.Protocol == "" && proto == corev1.ProtocolTCP) || port.Port == nil {
				continue
			}
			if *port.Port <= 0 || *port.Port > 65535 {
				continue
			}
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) == 0 {
					continue
				}
				addr, err := netip.ParseAddr(ep.Addresses[0])
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(addr.Unmap(), uint16(*port.Port))
				if seen[ap] {
					continue
				}
				seen[ap] = true
				e := Endpoint{Addr: ap.Addr(), Port: ap.Port(), Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
				if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
					e.Ready = false
				}
				if ep.NodeName != nil {
					e.NodeName = *ep.NodeName
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// String renders a Service for logs and test failures.
func (s Service) String() string {
	return fmt.Sprintf("%s ips=%v ports=%d policy=%s", s.Key, s.LoadBalancerIPs, len(s.Ports), s.TrafficPolicy)
}
