package aws

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/portico-lb/portico/providers"
)

// Names. Every name is derived from the Key alone, so a restarted operator
// finds what an earlier run created; the hash keeps names within AWS limits
// (32 characters for load balancers and target groups) and the ownership tags,
// not the name, decide whether Portico may touch a resource.

func keyHash(key providers.Key) string {
	sum := sha256.Sum256([]byte(key.ClusterID + "/" + key.Namespace + "/" + key.Name))
	return hex.EncodeToString(sum[:])
}

// LoadBalancerName is the NLB's name: "portico-" and 24 hex digits (32 chars).
func LoadBalancerName(key providers.Key) string { return "portico-" + keyHash(key)[:24] }

// SecurityGroupName is the name of the NLB's security group.
func SecurityGroupName(key providers.Key) string { return LoadBalancerName(key) }

// targetGroupPrefix starts the name of every target group for key.
func targetGroupPrefix(key providers.Key) string { return "portico-" + keyHash(key)[:12] + "-" }

// TargetGroupName is the name of key's target group for a protocol, listener
// port and target type, e.g. portico-0123456789ab-tcp443-i (at most 31 chars).
// Protocol and target type are immutable in AWS, so they are part of the name.
func TargetGroupName(key providers.Key, protocol elbtypes.ProtocolEnum, port int32, targetType elbtypes.TargetTypeEnum) string {
	code := map[elbtypes.ProtocolEnum]string{elbtypes.ProtocolEnumTcp: "tcp", elbtypes.ProtocolEnumUdp: "udp", elbtypes.ProtocolEnumTcpUdp: "tu"}[protocol]
	kind := "i" // instance
	if targetType == elbtypes.TargetTypeEnumIp {
		kind = "p" // pod IP
	}
	return fmt.Sprintf("%s%s%d-%s", targetGroupPrefix(key), code, port, kind)
}

// plan is what Ensure builds for one Service: a pure function of the desired
// load balancer and its annotations.
type plan struct {
	name      string
	scheme    elbtypes.LoadBalancerSchemeEnum
	ipType    elbtypes.IpAddressType
	crossZone bool
	// subnets and eips come from annotations; empty subnets means discover.
	subnets []string
	eips    []string
	// listeners are sorted by port; groups are keyed by name.
	listeners []listenerPlan
	groups    map[string]*groupPlan
	rules     []sgRule
	// sourceRanges are the Service's loadBalancerSourceRanges; when set,
	// the load balancer must have Portico's security group to enforce them.
	sourceRanges []string
	// skipped lists nodes without an EC2 instance provider ID.
	skipped []string
	// instances are the nodes' EC2 instance IDs, sorted: the targets, or
	// with pod targets the instances the pods run on.
	instances []string
	// backendRules asks for the cluster's backend security group on the
	// load balancer and node security group rules admitting it.
	backendRules bool
}

type listenerPlan struct {
	port     int32
	protocol elbtypes.ProtocolEnum
	group    string
	cert     string
	policy   string
}

type groupPlan struct {
	name          string
	protocol      elbtypes.ProtocolEnum
	port          int32
	targetType    elbtypes.TargetTypeEnum
	health        healthCheck
	proxyProtocol bool
	targets       []target
}

type healthCheck struct {
	protocol, port, path                  string
	interval, timeout, healthy, unhealthy int32
}

type target struct {
	id   string
	port int32
}

type sgRule struct {
	protocol string // tcp, udp
	port     int32
	cidr     string
}

// Health check defaults: a TCP check on the traffic port, or for
// externalTrafficPolicy Local an HTTP check of kube-proxy's healthCheckNodePort.
const (
	defaultHealthInterval = 10
	defaultHealthTimeout  = 5
	defaultHealthyCount   = 2
	defaultUnhealthyCount = 2
	defaultSSLPolicy      = "ELBSecurityPolicy-TLS13-1-2-2021-06"
	kubeProxyHealthPath   = "/healthz"
	kubeProxyHealthPort   = "10256"
	trafficPort           = "traffic-port"
)

var instanceIDRE = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)

// InstanceID returns the EC2 instance ID in a node's providerID
// (aws:///<zone>/<instance-id>), or false when it holds none.
func InstanceID(providerID string) (string, bool) {
	rest, ok := strings.CutPrefix(providerID, "aws://")
	if !ok {
		return "", false
	}
	id := rest[strings.LastIndexByte(rest, '/')+1:]
	return id, instanceIDRE.MatchString(id)
}

// buildPlan turns desired state and annotations into the AWS shape.
func buildPlan(d *providers.LoadBalancer, a Annotations) (*plan, error) {
	pl := &plan{
		name:      LoadBalancerName(d.Key),
		scheme:    elbtypes.LoadBalancerSchemeEnumInternetFacing,
		ipType:    elbtypes.IpAddressTypeIpv4,
		crossZone: a.CrossZone,
		subnets:   a.Subnets,
		eips:      a.EIPAllocations,
		groups:    map[string]*groupPlan{},
	}
	for _, r := range d.SourceRanges {
		pl.sourceRanges = append(pl.sourceRanges, r.Masked().String())
	}
	if len(d.RequestedIPs) > 0 {
		// An NLB's addresses come from its subnets, or from Elastic IPs
		// named per subnet; it cannot take a requested address.
		return nil, providers.Configf(ReasonRequestedIPUnsupported,
			"the Service asks for address %v (lb.portico.dev/ip or spec.loadBalancerIP), which an AWS Network Load Balancer cannot take; remove it and name Elastic IPs with %s (one per subnet) for fixed public addresses",
			d.RequestedIPs, AnnotationEIPAllocations)
	}
	pl.backendRules = !a.UnmanagedBackendRules
	if d.Scheme == providers.SchemeInternal {
		pl.scheme = elbtypes.LoadBalancerSchemeEnumInternal
		if len(a.EIPAllocations) > 0 {
			return nil, providers.Configf("InvalidAnnotation", "%s needs an internet-facing load balancer, but lb.portico.dev/scheme is internal", AnnotationEIPAllocations)
		}
	}
	if d.DualStack || len(d.IPFamilies) > 0 && d.IPFamilies[0] == "IPv6" {
		pl.ipType = elbtypes.IpAddressTypeDualstack
	}
	targetType := elbtypes.TargetTypeEnumInstance
	if d.TargetPods {
		targetType = elbtypes.TargetTypeEnumIp
	}

	byPort := map[int32][]providers.Port{}
	for _, p := range d.Ports {
		if p.Protocol != providers.TCP && p.Protocol != providers.UDP {
			return nil, providers.Configf("UnsupportedProtocol", "port %d uses %s; a Network Load Balancer carries only TCP and UDP", p.Port, p.Protocol)
		}
		byPort[p.Port] = append(byPort[p.Port], p)
	}
	tls, err := tlsPorts(d.Ports, a)
	if err != nil {
		return nil, err
	}
	ports := make([]int32, 0, len(byPort))
	for p := range byPort {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	if len(ports) > 50 {
		return nil, providers.Configf("TooManyPorts", "the Service has %d ports; a Network Load Balancer takes at most 50 listeners", len(ports))
	}

	var instances []target // node instance IDs, port filled per group
	for _, n := range d.Nodes {
		id, ok := InstanceID(n.ProviderID)
		if !ok {
			pl.skipped = append(pl.skipped, n.Name)
			continue
		}
		pl.instances = append(pl.instances, id)
		if !d.TargetPods {
			instances = append(instances, target{id: id})
		}
	}
	slices.Sort(pl.instances)
	pl.instances = slices.Compact(pl.instances)

	for _, port := range ports {
		svcPorts := byPort[port]
		lp := listenerPlan{port: port}
		switch {
		case len(svcPorts) == 2:
			lp.protocol = elbtypes.ProtocolEnumTcpUdp
		case svcPorts[0].Protocol == providers.UDP:
			lp.protocol = elbtypes.ProtocolEnumUdp
		default:
			lp.protocol = elbtypes.ProtocolEnumTcp
		}
		groupProto := lp.protocol
		if tls[port] {
			if lp.protocol != elbtypes.ProtocolEnumTcp {
				return nil, providers.Configf("InvalidAnnotation", "port %d carries UDP and cannot terminate TLS (%s)", port, AnnotationSSLPorts)
			}
			lp.protocol, lp.cert, lp.policy = elbtypes.ProtocolEnumTls, a.SSLCert, a.SSLPolicy
			if lp.policy == "" {
				lp.policy = defaultSSLPolicy
			}
		}
		g := &groupPlan{
			name:          TargetGroupName(d.Key, groupProto, port, targetType),
			protocol:      groupProto,
			targetType:    targetType,
			proxyProtocol: a.ProxyProtocol,
			health:        healthFor(d, a, groupProto),
		}
		lp.group = g.name
		if d.TargetPods {
			if len(svcPorts) == 2 && svcPorts[0].TargetPort != svcPorts[1].TargetPort {
				return nil, providers.Configf("MixedProtocolPorts", "port %d is both TCP and UDP but the target ports differ (%d, %d); a TCP_UDP listener forwards to one port",
					port, svcPorts[0].TargetPort, svcPorts[1].TargetPort)
			}
			g.port = svcPorts[0].TargetPort
			g.targets = podTargets(d.Endpoints, svcPorts[0])
		} else {
			np := svcPorts[0].NodePort
			if np == 0 {
				return nil, providers.Configf("NoNodePort", "port %d has no node port; set allocateLoadBalancerNodePorts: true or let Portico target pods", port)
			}
			if len(svcPorts) == 2 && svcPorts[1].NodePort != np {
				return nil, providers.Configf("MixedProtocolPorts", "port %d is both TCP and UDP but the node ports differ (%d, %d); give both the same nodePort",
					port, np, svcPorts[1].NodePort)
			}
			g.port = np
			for _, t := range instances {
				g.targets = append(g.targets, target{id: t.id, port: np})
			}
		}
		if g.port == 0 {
			g.port = port
		}
		g.targets = sortTargets(g.targets)
		pl.groups[g.name] = g
		pl.listeners = append(pl.listeners, lp)
	}
	pl.rules = securityGroupRules(d, pl)
	return pl, nil
}

// tlsPorts returns the listener ports that terminate TLS.
func tlsPorts(ports []providers.Port, a Annotations) (map[int32]bool, error) {
	out := map[int32]bool{}
	if a.SSLCert == "" {
		return out, nil
	}
	if len(a.SSLPorts) == 0 {
		// Every TCP-only port; a port that also carries UDP stays TCP_UDP.
		udp := map[int32]bool{}
		for _, p := range ports {
			if p.Protocol == providers.UDP {
				udp[p.Port] = true
			}
		}
		for _, p := range ports {
			if p.Protocol == providers.TCP && !udp[p.Port] {
				out[p.Port] = true
			}
		}
		return out, nil
	}
	for _, want := range a.SSLPorts {
		found := false
		for _, p := range ports {
			if p.Name == want || strconv.Itoa(int(p.Port)) == want {
				out[p.Port], found = true, true
			}
		}
		if !found {
			return nil, providers.Configf("InvalidAnnotation", "%s names port %q, which the Service does not have", AnnotationSSLPorts, want)
		}
	}
	return out, nil
}

// healthFor picks a group's health check: kube-proxy's healthCheckNodePort
// for externalTrafficPolicy Local; for UDP-carrying instance groups, which a
// TCP check of the traffic port cannot probe, kube-proxy's own health port;
// else TCP on the traffic port. Annotations override each field.
func healthFor(d *providers.LoadBalancer, a Annotations, proto elbtypes.ProtocolEnum) healthCheck {
	h := healthCheck{
		protocol: "TCP", port: trafficPort,
		interval: defaultHealthInterval, timeout: defaultHealthTimeout,
		healthy: defaultHealthyCount, unhealthy: defaultUnhealthyCount,
	}
	switch {
	case d.TargetPods:
	case d.TrafficPolicy == providers.TrafficPolicyLocal && d.HealthCheckNodePort > 0:
		h.protocol, h.port, h.path = "HTTP", strconv.Itoa(int(d.HealthCheckNodePort)), kubeProxyHealthPath
	case proto != elbtypes.ProtocolEnumTcp:
		h.protocol, h.port, h.path = "HTTP", kubeProxyHealthPort, kubeProxyHealthPath
	}
	o := a.HealthCheck
	if o.Protocol != "" {
		h.protocol = o.Protocol
	}
	if o.Port != "" {
		h.port = o.Port
	}
	if o.Path != "" {
		h.path = o.Path
	}
	if h.protocol == "TCP" {
		h.path = ""
	} else if h.path == "" {
		h.path = kubeProxyHealthPath
	}
	for _, kv := range []struct {
		dst *int32
		v   int32
	}{{&h.interval, o.Interval}, {&h.timeout, o.Timeout}, {&h.healthy, o.Healthy}, {&h.unhealthy, o.Unhealthy}} {
		if kv.v != 0 {
			*kv.dst = kv.v
		}
	}
	return h
}

func podTargets(eps []providers.Endpoint, port providers.Port) []target {
	var out []target
	for _, ep := range eps {
		if !ep.Ready || !ep.IP.IsValid() {
			continue
		}
		p := port.TargetPort
		if n, ok := ep.Ports[port.Name]; ok && n > 0 {
			p = n
		}
		if p <= 0 {
			continue
		}
		out = append(out, target{id: ep.IP.String(), port: p})
	}
	return out
}

func sortTargets(ts []target) []target {
	sort.Slice(ts, func(i, j int) bool { return ts[i].id < ts[j].id || ts[i].id == ts[j].id && ts[i].port < ts[j].port })
	return slices.Compact(ts)
}

// securityGroupRules allows the listener ports from loadBalancerSourceRanges,
// or from everywhere when none are given.
func securityGroupRules(d *providers.LoadBalancer, pl *plan) []sgRule {
	var cidrs []string
	for _, r := range d.SourceRanges {
		cidrs = append(cidrs, r.Masked().String())
	}
	if len(cidrs) == 0 {
		cidrs = []string{"0.0.0.0/0"}
		if pl.ipType == elbtypes.IpAddressTypeDualstack {
			cidrs = append(cidrs, "::/0")
		}
	}
	var out []sgRule
	for _, l := range pl.listeners {
		protos := []string{"tcp"}
		switch l.protocol {
		case elbtypes.ProtocolEnumUdp:
			protos = []string{"udp"}
		case elbtypes.ProtocolEnumTcpUdp:
			protos = []string{"tcp", "udp"}
		}
		for _, pr := range protos {
			for _, c := range cidrs {
				out = append(out, sgRule{protocol: pr, port: l.port, cidr: c})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return ruleKey(out[i]) < ruleKey(out[j]) })
	return slices.Compact(out)
}

func ruleKey(r sgRule) string { return fmt.Sprintf("%s/%05d/%s", r.protocol, r.port, r.cidr) }
