// Package dataplane moves load-balancer traffic to Service endpoints in the
// kernel, with nftables rules in Portico's own table (inet portico by
// default), programmed through sigs.k8s.io/knftables.
//
// A Dataplane is given Services (Sync at start, then Update/Delete per
// Service as they change); each Update is one nftables transaction that
// touches only that Service's chains, sets and map elements. docs/dataplane.md
// describes the table layout.
package dataplane

import (
	"net/netip"
	"time"
)

// ServiceKey names a Service.
type ServiceKey struct {
	Namespace string
	Name      string
}

func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// Protocol is a transport protocol as nftables names it.
type Protocol string

// Protocols carried by the dataplane.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// TrafficPolicy is the Service's externalTrafficPolicy.
type TrafficPolicy string

const (
	// Cluster sends to every ready endpoint and masquerades the client.
	Cluster TrafficPolicy = "Cluster"
	// Local sends only to ready endpoints on this node and keeps the
	// client's source address.
	Local TrafficPolicy = "Local"
)

// Service is what the dataplane needs of one Kubernetes Service of type
// LoadBalancer. FromKubernetes builds it from a Service and its
// EndpointSlices.
type Service struct {
	Key ServiceKey
	// LoadBalancerIPs are the addresses traffic arrives on
	// (status.loadBalancer.ingress).
	LoadBalancerIPs []netip.Addr
	Ports           []Port
	TrafficPolicy   TrafficPolicy
	// AffinityTimeout is the sessionAffinity ClientIP timeout; zero means
	// no affinity.
	AffinityTimeout time.Duration
	// SourceRanges, when not empty, are the only client prefixes allowed to
	// reach the load-balancer addresses (loadBalancerSourceRanges).
	SourceRanges []netip.Prefix
	// HealthCheckNodePort is spec.healthCheckNodePort (Local policy only).
	HealthCheckNodePort uint16
}

// Port is one Service port and the endpoints its EndpointSlices give it.
type Port struct {
	Name     string
	Protocol Protocol
	Port     uint16
	// NodePort is programmed only in kube-proxy-free mode.
	NodePort  uint16
	Endpoints []Endpoint
}

// Endpoint is one address:port behind a Service port.
type Endpoint struct {
	Addr     netip.Addr
	Port     uint16
	NodeName string
	// Ready endpoints take new connections; others (not ready, terminating)
	// only keep the connections conntrack already has.
	Ready bool
}

// usable returns the endpoints of port that take new connections from
// addresses of family v6 under the service's policy.
func (s *Service) usable(p *Port, nodeName string, v6 bool) []Endpoint {
	var out []Endpoint
	for _, ep := range p.Endpoints {
		if !ep.Ready || ep.Addr.Is6() != v6 {
			continue
		}
		if s.TrafficPolicy == Local && ep.NodeName != nodeName {
			continue
		}
		out = append(out, ep)
	}
	return out
}

// LocalReadyEndpoints counts the distinct ready endpoint addresses of the
// Service on node nodeName: the number a healthCheckNodePort reports.
func (s *Service) LocalReadyEndpoints(nodeName string) int {
	seen := map[netip.Addr]bool{}
	for _, p := range s.Ports {
		for _, ep := range p.Endpoints {
			if ep.Ready && ep.NodeName == nodeName {
				seen[ep.Addr] = true
			}
		}
	}
	return len(seen)
}
