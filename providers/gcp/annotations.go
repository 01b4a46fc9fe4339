package gcp

import (
	"regexp"
	"sort"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// AnnotationPrefix starts every GCP-specific Service annotation.
const AnnotationPrefix = "gcp.lb.portico.dev/"

// GCP-specific Service annotations; docs/providers/gcp.md describes each.
const (
	// AnnotationAddressName names an existing regional address the user
	// reserved. Portico uses it and never modifies or releases it.
	AnnotationAddressName = AnnotationPrefix + "address-name"
	// AnnotationAddressType is "reserved" (default: Portico reserves and
	// owns a regional address) or "ephemeral" (the forwarding rule gets an
	// ephemeral address). Changing ephemeral to reserved promotes the
	// address in use, so the IP is kept.
	AnnotationAddressType = AnnotationPrefix + "address-type"
	// AnnotationSubnet is the subnetwork of an internal load balancer (name
	// or projects/<p>/regions/<r>/subnetworks/<name>).
	AnnotationSubnet = AnnotationPrefix + "subnet"
	// AnnotationNetworkTier is PREMIUM or STANDARD, for external load
	// balancers.
	AnnotationNetworkTier = AnnotationPrefix + "network-tier"
)

// Address types.
const (
	AddressReserved  = "reserved"
	AddressEphemeral = "ephemeral"
)

// Annotations are the parsed gcp.lb.portico.dev/* settings of one Service.
// Zero values mean "not set": the provider applies its defaults.
type Annotations struct {
	AddressName string
	// AddressType is AddressReserved or AddressEphemeral ("" = reserved).
	AddressType string
	Subnet      string
	// NetworkTier is "PREMIUM", "STANDARD" or "" (the flag's default).
	NetworkTier string
}

var (
	gceNameRE   = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	subnetURLRE = regexp.MustCompile(`^projects/[a-z][-a-z0-9.:]{4,61}[a-z0-9]/regions/[a-z][-a-z0-9]{1,61}[a-z0-9]/subnetworks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	knownKeys   = map[string]bool{
		AnnotationAddressName: true, AnnotationAddressType: true, AnnotationSubnet: true, AnnotationNetworkTier: true,
	}
)

// ParseAnnotations reads the gcp.lb.portico.dev/* annotations. It ignores
// every other key and returns a *providers.ConfigError for a malformed or
// unknown GCP annotation. It is a pure function.
func ParseAnnotations(ann map[string]string) (Annotations, error) {
	var out Annotations
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first problem deterministically
	for _, k := range keys {
		if !strings.HasPrefix(k, AnnotationPrefix) {
			continue
		}
		if !knownKeys[k] {
			return Annotations{}, providers.Configf("UnknownAnnotation", "unknown annotation %s; see docs/providers/gcp.md for the supported keys", k)
		}
		v := strings.TrimSpace(ann[k])
		switch k {
		case AnnotationAddressName:
			if !gceNameRE.MatchString(v) {
				return Annotations{}, providers.Configf("InvalidAnnotation", "%s: %q is not a Compute Engine resource name (lowercase letters, digits and '-', at most 63 characters)", k, v)
			}
			out.AddressName = v
		case AnnotationAddressType:
			switch strings.ToLower(v) {
			case AddressReserved:
				out.AddressType = AddressReserved
			case AddressEphemeral:
				out.AddressType = AddressEphemeral
			default:
				return Annotations{}, providers.Configf("InvalidAnnotation", "%s: %q is neither %q nor %q", k, v, AddressReserved, AddressEphemeral)
			}
		case AnnotationSubnet:
			if !gceNameRE.MatchString(v) && !subnetURLRE.MatchString(v) {
				return Annotations{}, providers.Configf("InvalidAnnotation", "%s: %q is neither a subnetwork name nor projects/<project>/regions/<region>/subnetworks/<name>", k, v)
			}
			out.Subnet = v
		case AnnotationNetworkTier:
			switch t := strings.ToUpper(v); t {
			case "PREMIUM", "STANDARD":
				out.NetworkTier = t
			default:
				return Annotations{}, providers.Configf("InvalidAnnotation", "%s: %q is neither PREMIUM nor STANDARD", k, v)
			}
		}
	}
	if out.AddressName != "" && out.AddressType == AddressEphemeral {
		return Annotations{}, providers.Configf("InvalidAnnotation", "%s and %s=%s contradict each other: a named address is reserved", AnnotationAddressName, AnnotationAddressType, AddressEphemeral)
	}
	return out, nil
}
