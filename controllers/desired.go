package controllers

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// Reasons for desired-state errors (declared once, in package model).
const (
	ReasonNodePortMissing = model.ReasonNodePortMissing
	ReasonNoPorts         = model.ReasonNoPorts
)

// DesiredInput is everything the desired load balancer depends on.
type DesiredInput struct {
	ClusterID string
	Class     string
	Service   *corev1.Service
	Nodes     []corev1.Node
	// EligibleNodes, when not nil, replaces Nodes: the eligible nodes,
	// already converted and sorted by name, shared read-only between
	// Services (see nodeSet). Services with externalTrafficPolicy Cluster
	// get this very slice.
	EligibleNodes   []providers.Node
	Slices          []discoveryv1.EndpointSlice
	NamespaceLabels map[string]string
	// AllNodesForLocal keeps every eligible node for externalTrafficPolicy
	// Local: the backend's health check of healthCheckNodePort picks the
	// nodes with a ready endpoint (providers.LocalHealthChecker).
	AllNodesForLocal bool
}

// Desired computes the load balancer a Service should have. It is a pure
// function of its input: no clock, no client, no randomness, sorted output.
// Errors are *providers.ConfigError for things the user must fix.
func Desired(in DesiredInput) (*providers.LoadBalancer, error) {
	svc := in.Service
	v, err := model.Read(svc, in.Class)
	if err != nil {
		return nil, err
	}
	endpoints := readyEndpoints(in.Slices)
	d := &providers.LoadBalancer{
		Key: providers.Key{
			ClusterID: in.ClusterID,
			Namespace: svc.Namespace,
			Name:      svc.Name,
			UID:       string(svc.UID),
		},
		Class:                  in.Class,
		TargetPods:             v.TargetPods,
		TrafficPolicy:          v.TrafficPolicy,
		HealthCheckNodePort:    v.HealthCheckNodePort,
		Scheme:                 v.Scheme,
		RequestedIPs:           v.RequestedIPs,
		SharingKey:             v.SharingKey,
		SourceRanges:           v.SourceRanges,
		SessionAffinityTimeout: v.SessionAffinityTimeout,
		IPFamilies:             v.IPFamilies,
		DualStack:              v.DualStack,
		Labels:                 svc.Labels,
		NamespaceLabels:        in.NamespaceLabels,
		Annotations:            svc.Annotations,
		Endpoints:              endpoints,
		Selector:               svc.Spec.Selector,
	}
	for i, p := range v.Ports {
		if p.NodePort == 0 && !v.TargetPods {
			return nil, providers.Configf(ReasonNodePortMissing, "port %d/%s has no nodePort yet", p.Port, p.Protocol)
		}
		p.TargetPort = resolveTargetPort(svc.Spec.Ports[i], endpoints)
		d.Ports = append(d.Ports, p)
	}

	local := map[string]bool{}
	if d.TrafficPolicy == providers.TrafficPolicyLocal && !in.AllNodesForLocal {
		for _, ep := range endpoints {
			if ep.Ready {
				local[ep.NodeName] = true
			}
		}
	}
	if in.EligibleNodes != nil {
		if d.TrafficPolicy != providers.TrafficPolicyLocal || in.AllNodesForLocal {
			d.Nodes = in.EligibleNodes
			return d, nil
		}
		for _, n := range in.EligibleNodes {
			if local[n.Name] {
				d.Nodes = append(d.Nodes, n)
			}
		}
		return d, nil
	}
	for i := range in.Nodes {
		n := &in.Nodes[i]
		if !model.EligibleNode(n) || (d.TrafficPolicy == providers.TrafficPolicyLocal && !in.AllNodesForLocal && !local[n.Name]) {
			continue
		}
		d.Nodes = append(d.Nodes, model.ProviderNode(n))
	}
	slices.SortFunc(d.Nodes, func(a, b providers.Node) int { return cmp.Compare(a.Name, b.Name) })
	return d, nil
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
