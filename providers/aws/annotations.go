package aws

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// AnnotationPrefix starts every AWS-specific Service annotation.
const AnnotationPrefix = "aws.lb.portico.dev/"

// AWS-specific Service annotations; docs/providers/aws.md describes each.
const (
	AnnotationSubnets              = AnnotationPrefix + "subnets"
	AnnotationEIPAllocations       = AnnotationPrefix + "eip-allocations"
	AnnotationSSLCert              = AnnotationPrefix + "ssl-cert"
	AnnotationSSLPorts             = AnnotationPrefix + "ssl-ports"
	AnnotationSSLNegotiationPolicy = AnnotationPrefix + "ssl-negotiation-policy"
	AnnotationProxyProtocolV2      = AnnotationPrefix + "proxy-protocol-v2"
	AnnotationCrossZone            = AnnotationPrefix + "cross-zone"
	AnnotationHealthCheckProtocol  = AnnotationPrefix + "healthcheck-protocol"
	AnnotationHealthCheckPort      = AnnotationPrefix + "healthcheck-port"
	AnnotationHealthCheckPath      = AnnotationPrefix + "healthcheck-path"
	AnnotationHealthCheckInterval  = AnnotationPrefix + "healthcheck-interval"
	AnnotationHealthCheckTimeout   = AnnotationPrefix + "healthcheck-timeout"
	AnnotationHealthyThreshold     = AnnotationPrefix + "healthcheck-healthy-threshold"
	AnnotationUnhealthyThreshold   = AnnotationPrefix + "healthcheck-unhealthy-threshold"
	// AnnotationManageBackendSecurityGroupRules "false" leaves the node
	// security groups to the user: the load balancer does not carry the
	// cluster's backend security group.
	AnnotationManageBackendSecurityGroupRules = AnnotationPrefix + "manage-backend-security-group-rules"
)

// ReasonRequestedIPUnsupported is the ConfigError reason for lb.portico.dev/ip
// or spec.loadBalancerIP, which an NLB cannot honour.
const ReasonRequestedIPUnsupported = "RequestedIPUnsupported"

// Annotations are the parsed aws.lb.portico.dev/* settings of one Service.
// Zero values mean "not set": the provider applies its defaults.
type Annotations struct {
	// Subnets name the load balancer's subnets; empty means discover them by tag.
	Subnets []string
	// EIPAllocations pin one Elastic IP per subnet (internet-facing only).
	EIPAllocations []string
	// SSLCert is the ACM (or IAM) certificate ARN for TLS listeners.
	SSLCert string
	// SSLPorts are the ports (numbers or names) that terminate TLS; empty with
	// SSLCert set means every port that carries only TCP.
	SSLPorts []string
	// SSLPolicy is the TLS listeners' security policy.
	SSLPolicy     string
	ProxyProtocol bool
	CrossZone     bool
	HealthCheck   HealthCheckOverrides
	// UnmanagedBackendRules is true when the Service opts out of the
	// backend security group (AnnotationManageBackendSecurityGroupRules).
	UnmanagedBackendRules bool
}

// HealthCheckOverrides are user settings for target group health checks.
type HealthCheckOverrides struct {
	Protocol string // TCP, HTTP or HTTPS
	Port     string // traffic-port or a number
	Path     string
	// Interval and Timeout are seconds; thresholds are counts.
	Interval, Timeout, Healthy, Unhealthy int32
}

var (
	subnetIDRE   = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	allocIDRE    = regexp.MustCompile(`^eipalloc-[0-9a-f]{8,17}$`)
	certARNRE    = regexp.MustCompile(`^arn:aws[a-z-]*:(acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+|iam::\d{12}:server-certificate/[\w+=,.@/-]+)$`)
	policyRE     = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	portNameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`)
	hcPathRE     = regexp.MustCompile(`^/[\x21-\x7e]{0,1000}$`)
	knownAnnKeys = map[string]bool{
		AnnotationSubnets: true, AnnotationEIPAllocations: true, AnnotationSSLCert: true, AnnotationSSLPorts: true,
		AnnotationSSLNegotiationPolicy: true, AnnotationProxyProtocolV2: true, AnnotationCrossZone: true,
		AnnotationHealthCheckProtocol: true, AnnotationHealthCheckPort: true, AnnotationHealthCheckPath: true,
		AnnotationHealthCheckInterval: true, AnnotationHealthCheckTimeout: true, AnnotationHealthyThreshold: true,
		AnnotationUnhealthyThreshold: true, AnnotationManageBackendSecurityGroupRules: true,
	}
)

// ParseAnnotations reads the aws.lb.portico.dev/* annotations. It ignores
// every other key and returns a *providers.ConfigError for a malformed or
// unknown AWS annotation. It is a pure function.
func ParseAnnotations(ann map[string]string) (Annotations, error) {
	var a Annotations
	keys := make([]string, 0, len(ann))
	for k := range ann {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // report the first bad key deterministically
	for _, k := range keys {
		if !knownAnnKeys[k] {
			return Annotations{}, providers.Configf("UnknownAnnotation", "unknown annotation %s (see docs/providers/aws.md)", k)
		}
		if err := a.set(k, strings.TrimSpace(ann[k])); err != nil {
			return Annotations{}, err
		}
	}
	if err := a.validate(); err != nil {
		return Annotations{}, err
	}
	return a, nil
}

func (a *Annotations) set(key, v string) error {
	var err error
	switch key {
	case AnnotationSubnets:
		a.Subnets, err = idList(key, v, subnetIDRE)
	case AnnotationEIPAllocations:
		a.EIPAllocations, err = idList(key, v, allocIDRE)
	case AnnotationSSLCert:
		if !certARNRE.MatchString(v) {
			return invalid(key, v, "an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)")
		}
		a.SSLCert = v
	case AnnotationSSLPorts:
		a.SSLPorts, err = portList(key, v)
	case AnnotationSSLNegotiationPolicy:
		if !policyRE.MatchString(v) {
			return invalid(key, v, "an ELB security policy name such as ELBSecurityPolicy-TLS13-1-2-2021-06")
		}
		a.SSLPolicy = v
	case AnnotationProxyProtocolV2:
		a.ProxyProtocol, err = boolValue(key, v)
	case AnnotationCrossZone:
		a.CrossZone, err = boolValue(key, v)
	case AnnotationHealthCheckProtocol:
		switch p := strings.ToUpper(v); p {
		case "TCP", "HTTP", "HTTPS":
			a.HealthCheck.Protocol = p
		default:
			return invalid(key, v, "TCP, HTTP or HTTPS")
		}
	case AnnotationHealthCheckPort:
		if v != "traffic-port" {
			if _, err := intInRange(key, v, 1, 65535); err != nil {
				return err
			}
		}
		a.HealthCheck.Port = v
	case AnnotationHealthCheckPath:
		if !hcPathRE.MatchString(v) {
			return invalid(key, v, "an absolute URL path such as /healthz")
		}
		a.HealthCheck.Path = v
	case AnnotationHealthCheckInterval:
		a.HealthCheck.Interval, err = intInRange(key, v, 5, 300)
	case AnnotationHealthCheckTimeout:
		a.HealthCheck.Timeout, err = intInRange(key, v, 2, 120)
	case AnnotationHealthyThreshold:
		a.HealthCheck.Healthy, err = intInRange(key, v, 2, 10)
	case AnnotationUnhealthyThreshold:
		a.HealthCheck.Unhealthy, err = intInRange(key, v, 2, 10)
	case AnnotationManageBackendSecurityGroupRules:
		var manage bool
		manage, err = boolValue(key, v)
		a.UnmanagedBackendRules = !manage
	}
	return err
}

func (a *Annotations) validate() error {
	if len(a.EIPAllocations) > 0 && len(a.Subnets) > 0 && len(a.EIPAllocations) != len(a.Subnets) {
		return providers.Configf("InvalidAnnotation", "%s lists %d allocations but %s lists %d subnets; give one allocation per subnet",
			AnnotationEIPAllocations, len(a.EIPAllocations), AnnotationSubnets, len(a.Subnets))
	}
	if (len(a.SSLPorts) > 0 || a.SSLPolicy != "") && a.SSLCert == "" {
		return providers.Configf("InvalidAnnotation", "%s and %s need %s", AnnotationSSLPorts, AnnotationSSLNegotiationPolicy, AnnotationSSLCert)
	}
	if a.HealthCheck.Path != "" && a.HealthCheck.Protocol == "TCP" {
		return providers.Configf("InvalidAnnotation", "%s cannot be used with %s TCP", AnnotationHealthCheckPath, AnnotationHealthCheckProtocol)
	}
	return nil
}

func invalid(key, v, want string) error {
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return providers.Configf("InvalidAnnotation", "annotation %s=%q is invalid: want %s", key, v, want)
}

func idList(key, v string, re *regexp.Regexp) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if !re.MatchString(f) {
			return nil, invalid(key, v, "a comma-separated list of IDs like "+strings.Trim(re.String()[1:], "$"))
		}
		if seen[f] {
			return nil, invalid(key, v, "IDs without duplicates")
		}
		seen[f] = true
		out = append(out, f)
	}
	return out, nil
}

func portList(key, v string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "*" {
			return nil, nil // every TCP port, the default
		}
		if n, err := strconv.ParseUint(f, 10, 16); err == nil {
			if n == 0 {
				return nil, invalid(key, v, "port numbers from 1 to 65535")
			}
			out = append(out, strconv.FormatUint(n, 10))
			continue
		}
		if !portNameRE.MatchString(f) || strings.Trim(f, "0123456789") == "" {
			return nil, invalid(key, v, "a comma-separated list of port numbers or names, or *")
		}
		out = append(out, f)
	}
	return out, nil
}

func boolValue(key, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid(key, v, "true or false")
	}
	return b, nil
}

func intInRange(key, v string, lo, hi int) (int32, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, invalid(key, v, "an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
	}
	return int32(n), nil
}
