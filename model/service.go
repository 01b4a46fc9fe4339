package model

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-lb/portico/providers"
)

// DefaultAffinityTimeout is Kubernetes' default ClientIP affinity timeout.
const DefaultAffinityTimeout = 10800 * time.Second

// Service is Portico's normalized reading of a LoadBalancer Service.
type Service struct {
	Namespace, Name, UID string
	// Class is the class that serves it (default class included), as
	// decided by Classes.For or recorded by the operator.
	Class  string
	Scheme providers.Scheme
	// Ports are the Service's ports in spec order; TargetPort is left for
	// whoever knows the endpoints.
	Ports               []providers.Port
	TrafficPolicy       providers.TrafficPolicy
	HealthCheckNodePort int32
	// SourceRanges are spec.loadBalancerSourceRanges, else the legacy
	// annotation: trimmed, masked, IPv4-mapped IPv6 unmapped. Empty means
	// no restriction.
	SourceRanges []netip.Prefix
	// SessionAffinityTimeout is zero without ClientIP affinity.
	SessionAffinityTimeout time.Duration
	// RequestedIPs come from lb.portico.dev/ip, else spec.loadBalancerIP.
	RequestedIPs []netip.Addr
	// SharingKey is lb.portico.dev/allow-shared-ip, "" when not sharing.
	SharingKey string
	IPFamilies []string
	DualStack  bool
	// TargetPods is allocateLoadBalancerNodePorts: false.
	TargetPods bool
	// Addresses are the IPs in status.loadBalancer.ingress, unmapped.
	Addresses []netip.Addr
}

// Read returns Portico's reading of svc for class. Malformed user input is a
// *providers.ConfigError naming the field and the reason; nothing is
// silently dropped.
func Read(svc *corev1.Service, class string) (*Service, error) {
	out := &Service{
		Namespace:     svc.Namespace,
		Name:          svc.Name,
		UID:           string(svc.UID),
		Class:         class,
		TrafficPolicy: providers.TrafficPolicyCluster,
		TargetPods:    svc.Spec.AllocateLoadBalancerNodePorts != nil && !*svc.Spec.AllocateLoadBalancerNodePorts,
	}
	var err error
	if out.Scheme, err = Scheme(svc.Annotations); err != nil {
		return nil, err
	}
	if out.RequestedIPs, err = RequestedIPs(svc); err != nil {
		return nil, err
	}
	if out.SharingKey, err = SharingKey(svc.Annotations); err != nil {
		return nil, err
	}
	if out.SourceRanges, err = SourceRanges(svc); err != nil {
		return nil, err
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, providers.Configf(ReasonNoPorts, "the Service has no ports")
	}
	for _, sp := range svc.Spec.Ports {
		proto := providers.Protocol(sp.Protocol)
		if proto == "" {
			proto = providers.TCP
		}
		out.Ports = append(out.Ports, providers.Port{Name: sp.Name, Protocol: proto, Port: sp.Port, NodePort: sp.NodePort})
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		out.TrafficPolicy = providers.TrafficPolicyLocal
		out.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	}
	out.SessionAffinityTimeout = AffinityTimeout(svc)
	for _, f := range svc.Spec.IPFamilies {
		out.IPFamilies = append(out.IPFamilies, string(f))
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil && *p != corev1.IPFamilyPolicySingleStack {
		out.DualStack = len(svc.Spec.IPFamilies) > 1 || *p == corev1.IPFamilyPolicyRequireDualStack
	}
	out.Addresses = IngressIPs(svc)
	return out, nil
}

// AffinityTimeout is the ClientIP session-affinity timeout of svc, zero
// without affinity; an unset or non-positive timeout is Kubernetes' default.
func AffinityTimeout(svc *corev1.Service) time.Duration {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return 0
	}
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
		return time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
	}
	return DefaultAffinityTimeout
}

// IngressIPs returns the IPs of status.loadBalancer.ingress, unmapped;
// hostnames and unparsable entries are skipped.
func IngressIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// SourceRanges returns the client ranges allowed to reach svc:
// spec.loadBalancerSourceRanges, or when that is empty the legacy annotation
// (comma-separated), as k8s.io/cloud-provider's GetLoadBalancerSourceRanges
// reads them. Entries are trimmed, masked, and IPv4-mapped IPv6 prefixes
// are unmapped. An entry that is not a CIDR is a ConfigError: serving the
// Service without it would let in clients the user meant to keep out.
func SourceRanges(svc *corev1.Service) ([]netip.Prefix, error) {
	raw, field := svc.Spec.LoadBalancerSourceRanges, "spec.loadBalancerSourceRanges"
	if len(raw) == 0 {
		a := strings.TrimSpace(svc.Annotations[AnnotationSourceRanges])
		if a == "" {
			return nil, nil
		}
		raw, field = strings.Split(a, ","), AnnotationSourceRanges
	}
	var out []netip.Prefix
	for _, r := range raw {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		p, err := netip.ParsePrefix(r)
		if err != nil || p.Addr().Zone() != "" {
			return nil, providers.Configf(ReasonInvalidSourceRange, "%s: %q is not a CIDR", field, shorten(r))
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Scheme reads lb.portico.dev/scheme.
func Scheme(ann map[string]string) (providers.Scheme, error) {
	v, ok := ann[AnnotationScheme]
	if !ok {
		return providers.SchemeExternal, nil
	}
	switch strings.TrimSpace(v) {
	case "external", "internet-facing", "":
		return providers.SchemeExternal, nil
	case "internal":
		return providers.SchemeInternal, nil
	}
	return providers.SchemeExternal, invalid(AnnotationScheme, v, `want "external" or "internal"`)
}

// RequestedIPs reads lb.portico.dev/ip, or when it is absent the deprecated
// spec.loadBalancerIP.
func RequestedIPs(svc *corev1.Service) ([]netip.Addr, error) {
	spec, key := svc.Annotations[AnnotationIP], AnnotationIP
	if strings.TrimSpace(spec) == "" && svc.Spec.LoadBalancerIP != "" { //nolint:staticcheck // honoured for compatibility
		spec, key = svc.Spec.LoadBalancerIP, "spec.loadBalancerIP" //nolint:staticcheck // honoured for compatibility
	}
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	ips, err := ParseIPList(spec)
	if err != nil {
		return nil, invalid(key, spec, err.Error())
	}
	return ips, nil
}

var sharingKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// SharingKey reads lb.portico.dev/allow-shared-ip; "" when absent.
func SharingKey(ann map[string]string) (string, error) {
	v, ok := ann[AnnotationAllowSharedIP]
	if !ok {
		return "", nil
	}
	v = strings.TrimSpace(v)
	if !sharingKeyRE.MatchString(v) {
		return "", invalid(AnnotationAllowSharedIP, v, "want a key of letters, digits, '.', '_' or '-', at most 63 characters")
	}
	return v, nil
}

// ParseIPList parses "ip" or "ipv4,ipv6": at most one address per family,
// none that could never be a load-balancer address.
func ParseIPList(s string) ([]netip.Addr, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("at most two addresses (one IPv4, one IPv6), got %d", len(parts))
	}
	var out []netip.Addr
	seen4, seen6 := false, false
	for _, p := range parts {
		p = strings.TrimSpace(p)
		a, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", shorten(p))
		}
		if a.Zone() != "" {
			return nil, fmt.Errorf("%q has a zone; want a plain address", a)
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return nil, fmt.Errorf("%s cannot be a load-balancer address", a)
		}
		if a.Is4() {
			if seen4 {
				return nil, fmt.Errorf("two IPv4 addresses given")
			}
			seen4 = true
		} else {
			if seen6 {
				return nil, fmt.Errorf("two IPv6 addresses given")
			}
			seen6 = true
		}
		out = append(out, a)
	}
	return out, nil
}

// invalid is the ConfigError for a malformed annotation: the reason first,
// the offending value shortened, never the reason.
func invalid(key, value, why string) error {
	return providers.Configf(ReasonInvalidAnnotation, "%s: %s (got %q)", key, why, shorten(value))
}

// shorten cuts a user's value to 32 characters (on a character boundary)
// for a message, so the reason around it always shows.
func shorten(v string) string {
	const max = 32
	if utf8.RuneCountInString(v) <= max {
		return v
	}
	n := 0
	for i := range v {
		if n == max {
			return v[:i] + "..."
		}
		n++
	}
	return v
}
