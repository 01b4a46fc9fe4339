package controllers

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/providers"
)

// Node labels and taints that take a node out of load-balancer backends.
const (
	LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"
	TaintToBeDeleted   = "ToBeDeletedByClusterAutoscaler"
	LabelZone          = "topology.kubernetes.io/zone"
)

// Reasons for desired-state errors.
const (
	ReasonNodePortMissing = "NodePortMissing"
	ReasonNoPorts         = "NoPorts"
)

// DesiredInput is everything the desired load balancer depends on.
type DesiredInput struct {
	ClusterID       string
	Class           string
	Service         *corev1.Service
	Nodes           []corev1.Node
	Slices          []discoveryv1.EndpointSlice
	NamespaceLabels map[string]string
}

// Desired computes the load balancer a Service should have. It is a pure
// function of its input: no clock, no client, no randomness, sorted output.
// Errors are *providers.ConfigError for things the user must fix.
func Desired(in DesiredInput) (*providers.LoadBalancer, error) {
	svc := in.Service
	ann, err := parseAnnotations(svc.Annotations, svc.Spec.LoadBalancerIP) //nolint:staticcheck // honoured for compatibility
	if err != nil {
		return nil, err
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, providers.Configf(ReasonNoPorts, "the Service has no ports")
	}

	targetPods := svc.Spec.AllocateLoadBalancerNodePorts != nil && !*svc.Spec.AllocateLoadBalancerNodePorts
	endpoints := readyEndpoints(in.Slices)

	d := &providers.LoadBalancer{
		Key: providers.Key{
			ClusterID: in.ClusterID,
			Namespace: svc.Namespace,
			Name:      svc.Name,
			UID:       string(svc.UID),
		},
		Class:           in.Class,
		TargetPods:      targetPods,
		TrafficPolicy:   providers.TrafficPolicyCluster,
		Scheme:          ann.Scheme,
		RequestedIPs:    ann.IPs,
		SharingKey:      ann.SharingKey,
		Labels:          svc.Labels,
		NamespaceLabels: in.NamespaceLabels,
		Annotations:     svc.Annotations,
		Endpoints:       endpoints,
		Selector:        svc.Spec.Selector,
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		d.TrafficPolicy = providers.TrafficPolicyLocal
		d.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	}
	for _, f := range svc.Spec.IPFamilies {
		d.IPFamilies = append(d.IPFamilies, string(f))
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil && *p != corev1.IPFamilyPolicySingleStack {
		d.DualStack = len(svc.Spec.IPFamilies) > 1 || *p == corev1.IPFamilyPolicyRequireDualStack
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		d.SessionAffinityTimeout = 10800 * time.Second
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			d.SessionAffinityTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, providers.Configf("InvalidSourceRange", "spec.loadBalancerSourceRanges: %q is not a CIDR", r)
		}
		d.SourceRanges = append(d.SourceRanges, p.Masked())
	}

	for _, sp := range svc.Spec.Ports {
		if sp.NodePort == 0 && !targetPods {
			return nil, providers.Configf(ReasonNodePortMissing, "port %d/%s has no nodePort yet", sp.Port, sp.Protocol)
		}
		d.Ports = append(d.Ports, providers.Port{
			Name:       sp.Name,
			Protocol:   providers.Protocol(sp.Protocol),
			Port:       sp.Port,
			NodePort:   sp.NodePort,
			TargetPort: resolveTargetPort(sp, endpoints),
		})
	}

	local := map[string]bool{}
	if d.TrafficPolicy == providers.TrafficPolicyLocal {
		for _, ep := range endpoints {
			if ep.Ready {
				local[ep.NodeName] = true
			}
		}
	}
	for i := range in.Nodes {
		n := &in.Nodes[i]
		if !EligibleNode(n) || (d.TrafficPolicy == providers.TrafficPolicyLocal && !local[n.Name]) {
			continue
		}
		d.Nodes = append(d.Nodes, toProviderNode(n))
	}
	slices.SortFunc(d.Nodes, func(a, b providers.Node) int { return cmp.Compare(a.Name, b.Name) })
	return d, nil
}

// EligibleNode reports whether a node may receive load-balanced traffic: Ready,
// not being deleted, not excluded by label, not being drained by the
// autoscaler.
func EligibleNode(n *corev1.Node) bool {
	if n.DeletionTimestamp != nil {
		return false
	}
	if _, ok := n.Labels[LabelExcludeFromLB]; ok {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == TaintToBeDeleted {
			return false
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func toProviderNode(n *corev1.Node) providers.Node {
	out := providers.Node{Name: n.Name, ProviderID: n.Spec.ProviderID, Zone: n.Labels[LabelZone]}
	for _, a := range n.Status.Addresses {
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		switch a.Type {
		case corev1.NodeInternalIP:
			out.InternalIPs = append(out.InternalIPs, ip)
		case corev1.NodeExternalIP:
			out.ExternalIPs = append(out.ExternalIPs, ip)
		}
	}
	return out
}

// readyEndpoints flattens EndpointSlices into endpoints with Ready set per
// EndpointSlice conditions, deduplicated by IP and sorted.
func readyEndpoints(slicesIn []discoveryv1.EndpointSlice) []providers.Endpoint {
	byIP := map[netip.Addr]*providers.Endpoint{}
	for _, s := range slicesIn {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ep, ok := byIP[ip]
				if !ok {
					ep = &providers.Endpoint{IP: ip, Ports: map[string]int32{}}
					byIP[ip] = ep
				}
				if e.NodeName != nil {
					ep.NodeName = *e.NodeName
				}
				ep.Ready = e.Conditions.Ready == nil || *e.Conditions.Ready
				ep.Serving = e.Conditions.Serving == nil || *e.Conditions.Serving
				ep.Terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
				for _, p := range s.Ports {
					if p.Port != nil {
						name := ""
						if p.Name != nil {
							name = *p.Name
						}
						ep.Ports[name] = *p.Port
					}
				}
			}
		}
	}
	out := make([]providers.Endpoint, 0, len(byIP))
	for _, ep := range byIP {
		out = append(out, *ep)
	}
	slices.SortFunc(out, func(a, b providers.Endpoint) int { return a.IP.Compare(b.IP) })
	return out
}

// resolveTargetPort returns the endpoint port for a Service port: the numeric
// targetPort, or the one number every endpoint agrees on for a named port.
func resolveTargetPort(sp corev1.ServicePort, eps []providers.Endpoint) int32 {
	if sp.TargetPort.IntVal != 0 && sp.TargetPort.StrVal == "" {
		return sp.TargetPort.IntVal
	}
	var got int32
	for _, ep := range eps {
		p, ok := ep.Ports[sp.Name]
		if !ok {
			continue
		}
		if got != 0 && p != got {
			return 0
		}
		got = p
	}
	if got == 0 && sp.TargetPort.StrVal == "" {
		return sp.Port
	}
	return got
}
