package dataplane

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/model"
)

// FromKubernetes builds the dataplane view of svc from its EndpointSlices
// (slices of other Services are ignored). It reads the load-balancer
// addresses from status.loadBalancer.ingress, the ports, the traffic
// policy, session affinity and source ranges from the spec, and for every
// Service port the endpoints the slices give that port (matched by port
// name and protocol, the way kube-proxy does). Invalid source ranges are a
// *providers.ConfigError: programming the Service without them would open
// it to clients the user meant to keep out.
func FromKubernetes(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) (Service, error) {
	ranges, err := model.SourceRanges(svc)
	if err != nil {
		return Service{}, err
	}
	out := Service{
		Key:             ServiceKey{Namespace: svc.Namespace, Name: svc.Name},
		TrafficPolicy:   Cluster,
		AffinityTimeout: model.AffinityTimeout(svc),
		LoadBalancerIPs: model.IngressIPs(svc),
		SourceRanges:    ranges,
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		out.TrafficPolicy = Local
		out.HealthCheckNodePort = uint16(svc.Spec.HealthCheckNodePort)
	}

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
