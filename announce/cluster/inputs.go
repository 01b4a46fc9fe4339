// Package cluster feeds the announcer from Kubernetes and publishes its
// decisions: it watches Services of class lb.portico.dev/local,
// EndpointSlices and Nodes through a controller-runtime cache, and writes
// which node announces each address into LoadBalancer
// status.announcements (server-side apply, field manager
// "portico-forwarder") with an Event on the Service when it changes.
package cluster

import (
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/announce"
	"github.com/portico-lb/portico/providers"
)

// Class is the loadBalancerClass whose addresses forwarders announce.
var Class = providers.Class("local")

// ExcludeLabel keeps a node from announcing, as for cloud load balancers.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Snapshot is what the cache holds.
type Snapshot struct {
	Services       []corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice
	Nodes          []corev1.Node
}

// BuildInputs turns a snapshot into announcer inputs and the heartbeat peer
// set (Ready node name -> InternalIP:port), which is also the set a node
// needs a majority of to announce. It is pure.
func BuildInputs(s Snapshot, heartbeatPort uint16) (announce.Inputs, map[string]netip.AddrPort) {
	var in announce.Inputs
	peers := map[string]netip.AddrPort{}
	for _, n := range s.Nodes {
		if !ready(&n) {
			// A NotReady node leaves the peer set too, so that once the
			// apiserver notices dead nodes the survivors regain quorum.
			continue
		}
		if ip, ok := nodeIP(&n); ok {
			peers[n.Name] = netip.AddrPortFrom(ip, heartbeatPort)
		}
		if _, excluded := n.Labels[ExcludeLabel]; !excluded {
			in.ReadyNodes = append(in.ReadyNodes, n.Name)
		}
	}
	sort.Strings(in.ReadyNodes)

	// Nodes with a ready endpoint, per Service.
	endpointNodes := map[string][]string{}
	for _, es := range s.EndpointSlices {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := es.Namespace + "/" + svc
		for _, ep := range es.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				endpointNodes[key] = append(endpointNodes[key], *ep.NodeName)
			}
		}
	}
	for _, svc := range s.Services {
		if !IsLocal(&svc) {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		nodes := slices.Compact(slices.Sorted(slices.Values(endpointNodes[key])))
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(ing.IP)
			if err != nil {
				continue
			}
			in.Addresses = append(in.Addresses, announce.Address{
				IP:            ip,
				Service:       key,
				LocalOnly:     svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
				EndpointNodes: nodes,
			})
		}
	}
	// Services sharing an address give one entry each; announce.Assign
	// decides each address once over all of its entries.
	sort.Slice(in.Addresses, func(i, j int) bool {
		a, b := in.Addresses[i], in.Addresses[j]
		if a.IP != b.IP {
			return a.IP.Less(b.IP)
		}
		return a.Service < b.Service
	})
	return in, peers
}

// IsLocal reports whether svc is a LoadBalancer Service of class
// lb.portico.dev/local.
func IsLocal(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass == Class
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodeIP is the node's first InternalIP, IPv4 preferred.
func nodeIP(n *corev1.Node) (netip.Addr, bool) {
	var v6 netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		if ip.Is4() {
			return ip, true
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	return v6, v6.IsValid()
}
