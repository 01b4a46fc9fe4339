package controllers

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// Cloud-neutral annotations on a Service (../docs/annotations.md). Provider
// annotations (aws.lb.portico.dev/<key>, ...) are parsed by each provider.
const (
	// AnnotationScheme is "external" (default) or "internal".
	AnnotationScheme = "lb.portico.dev/scheme"
	// AnnotationIP requests addresses: one IP, or an IPv4 and an IPv6
	// separated by a comma for dual-stack.
	AnnotationIP = "lb.portico.dev/ip"
	// AnnotationAllowSharedIP lets Services with the same key share an
	// address when their ports do not collide (local backend).
	AnnotationAllowSharedIP = "lb.portico.dev/allow-shared-ip"
)

// Condition reasons for malformed annotations.
const (
	ReasonInvalidAnnotation = "InvalidAnnotation"
)

var sharingKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// neutralAnnotations are the cloud-neutral settings of a Service.
type neutralAnnotations struct {
	Scheme     providers.Scheme
	IPs        []netip.Addr
	SharingKey string
}

// parseAnnotations reads the cloud-neutral annotations. loadBalancerIP is the
// deprecated spec.loadBalancerIP, honoured when the annotation is absent.
// Every error is a *providers.ConfigError naming the annotation.
func parseAnnotations(ann map[string]string, loadBalancerIP string) (neutralAnnotations, error) {
	out := neutralAnnotations{Scheme: providers.SchemeExternal}

	if v, ok := ann[AnnotationScheme]; ok {
		switch strings.TrimSpace(v) {
		case "external", "internet-facing", "":
			out.Scheme = providers.SchemeExternal
		case "internal":
			out.Scheme = providers.SchemeInternal
		default:
			return out, invalid(AnnotationScheme, v, `want "external" or "internal"`)
		}
	}

	ipSpec, key := ann[AnnotationIP], AnnotationIP
	if strings.TrimSpace(ipSpec) == "" && loadBalancerIP != "" {
		ipSpec, key = loadBalancerIP, "spec.loadBalancerIP"
	}
	if strings.TrimSpace(ipSpec) != "" {
		ips, err := parseIPList(ipSpec)
		if err != nil {
			return out, invalid(key, ipSpec, err.Error())
		}
		out.IPs = ips
	}

	if v, ok := ann[AnnotationAllowSharedIP]; ok {
		v = strings.TrimSpace(v)
		if !sharingKeyRE.MatchString(v) {
			return out, invalid(AnnotationAllowSharedIP, v, "want a key of letters, digits, '.', '_' or '-', at most 63 characters")
		}
		out.SharingKey = v
	}
	return out, nil
}

// parseIPList parses "ip" or "ipv4,ipv6": at most one address per family.
func parseIPList(s string) ([]netip.Addr, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("at most two addresses (one IPv4, one IPv6), got %d", len(parts))
	}
	var out []netip.Addr
	seen4, seen6 := false, false
	for _, p := range parts {
		a, err := netip.ParseAddr(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", strings.TrimSpace(p))
		}
		if a.Zone() != "" {
			return nil, fmt.Errorf("%q has a zone; want a plain address", a)
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
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

func invalid(key, value, why string) error {
	if len(value) > 64 {
		value = value[:64] + "..."
	}
	return providers.Configf(ReasonInvalidAnnotation, "%s: invalid value %q: %s", key, value, why)
}
