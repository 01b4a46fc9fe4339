package azure

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// AnnotationPrefix prefixes every azure-specific Service annotation.
const AnnotationPrefix = "azure.lb.portico.dev/"

// Service annotations the azure provider reads (see docs/providers/azure.md).
// Whether the load balancer is internal comes from the cloud-neutral
// lb.portico.dev/scheme annotation (desired.Scheme), not from one of these.
const (
	AnnotationSubnet           = AnnotationPrefix + "subnet"
	AnnotationPublicIPName     = AnnotationPrefix + "public-ip-name"
	AnnotationPublicIPPrefix   = AnnotationPrefix + "public-ip-prefix"
	AnnotationIdleTimeout      = AnnotationPrefix + "idle-timeout"
	AnnotationTCPReset         = AnnotationPrefix + "tcp-reset"
	AnnotationProbeProtocol    = AnnotationPrefix + "probe-protocol"
	AnnotationProbePort        = AnnotationPrefix + "probe-port"
	AnnotationProbeRequestPath = AnnotationPrefix + "probe-request-path"
	AnnotationProbeInterval    = AnnotationPrefix + "probe-interval"
	AnnotationProbeThreshold   = AnnotationPrefix + "probe-num-of-probe"
)

// Settings are the parsed azure annotations of one Service. Zero values
// mean "not set": the provider's defaults apply.
type Settings struct {
	// Subnet is the subnet name for an internal frontend.
	Subnet string
	// PublicIPName names the public IP of an external frontend. When a public
	// IP of that name exists without Portico's tags, Portico uses it as is
	// and never modifies or deletes it.
	PublicIPName string
	// PublicIPPrefix is the name or resource ID of a public IP prefix the new
	// public IP is allocated from.
	PublicIPPrefix string
	// IdleTimeoutMinutes is the rules' TCP idle timeout, 4-100.
	IdleTimeoutMinutes int32
	// TCPReset sends TCP resets on idle timeout; nil means the default (true).
	TCPReset *bool
	// Probe overrides.
	ProbeProtocol    string // "Tcp", "Http" or "Https"
	ProbePort        int32
	ProbeRequestPath string
	ProbeInterval    int32 // seconds, 5-3600
	ProbeThreshold   int32 // consecutive probes, 1-100
}

// Azure resource names: 1-80 characters of letters, digits, '_', '.', '-',
// starting with a letter or digit and ending with a letter, digit or '_'.
var resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`)

// prefixIDRE matches a public IP prefix resource ID.
var prefixIDRE = regexp.MustCompile(`(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/publicIPPrefixes/[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]?$`)

// ParseAnnotations reads the azure.lb.portico.dev/* annotations. It is pure;
// any malformed or unknown key yields a *providers.ConfigError.
func ParseAnnotations(ann map[string]string) (Settings, error) {
	var s Settings
	keys := make([]string, 0, len(ann))
	for k := range ann {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		v := strings.TrimSpace(ann[k])
		var err error
		switch k {
		case AnnotationSubnet:
			if !resourceNameRE.MatchString(v) {
				err = fmt.Errorf("%q is not a valid subnet name", v)
			}
			s.Subnet = v
		case AnnotationPublicIPName:
			if !resourceNameRE.MatchString(v) {
				err = fmt.Errorf("%q is not a valid Azure resource name", v)
			}
			s.PublicIPName = v
		case AnnotationPublicIPPrefix:
			if !resourceNameRE.MatchString(v) && !prefixIDRE.MatchString(v) {
				err = fmt.Errorf("%q is neither a public IP prefix name nor its resource ID", v)
			}
			s.PublicIPPrefix = v
		case AnnotationIdleTimeout:
			s.IdleTimeoutMinutes, err = parseInt32(v, 4, 100)
		case AnnotationTCPReset:
			var b bool
			b, err = strconv.ParseBool(v)
			s.TCPReset = &b
		case AnnotationProbeProtocol:
			switch strings.ToLower(v) {
			case "tcp":
				s.ProbeProtocol = "Tcp"
			case "http":
				s.ProbeProtocol = "Http"
			case "https":
				s.ProbeProtocol = "Https"
			default:
				err = fmt.Errorf("%q is not one of Tcp, Http, Https", v)
			}
		case AnnotationProbePort:
			s.ProbePort, err = parseInt32(v, 1, 65535)
		case AnnotationProbeRequestPath:
			if !strings.HasPrefix(v, "/") || len(v) > 1024 || strings.ContainsAny(v, " \t\r\n?#") {
				err = fmt.Errorf("%q is not an absolute URL path", v)
			}
			s.ProbeRequestPath = v
		case AnnotationProbeInterval:
			s.ProbeInterval, err = parseInt32(v, 5, 3600)
		case AnnotationProbeThreshold:
			s.ProbeThreshold, err = parseInt32(v, 1, 100)
		default:
			err = fmt.Errorf("unknown annotation")
		}
		if err != nil {
			return Settings{}, providers.Configf("InvalidAnnotation", "annotation %s: %v", k, err)
		}
	}
	if s.ProbeRequestPath != "" && s.ProbeProtocol == "Tcp" {
		return Settings{}, providers.Configf("InvalidAnnotation", "annotation %s is set but %s is Tcp, which has no request path", AnnotationProbeRequestPath, AnnotationProbeProtocol)
	}
	return s, nil
}

func parseInt32(v string, lo, hi int64) (int32, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is outside %d-%d", n, lo, hi)
	}
	return int32(n), nil
}
