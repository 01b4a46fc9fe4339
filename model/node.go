package model

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-lb/portico/providers"
)

// EligibleNode reports whether a node may carry load-balanced traffic (as a
// cloud backend target or as an announcer): Ready, not being deleted, not
// excluded by node.kubernetes.io/exclude-from-external-load-balancers, not
// being drained by the cluster autoscaler. The upstream service controller
// and MetalLB apply the same rule.
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
	return Ready(n)
}

// Ready reports the node's Ready condition.
func Ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ProviderNode is what a backend needs of a node.
func ProviderNode(n *corev1.Node) providers.Node {
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

// NodeChanged reports whether an update of a node can change any load
// balancer: its eligibility or what a backend reads of it. Heartbeats,
// conditions other than Ready, images, labels and annotations that no rule
// reads do not count.
func NodeChanged(o, n *corev1.Node) bool {
	if EligibleNode(o) != EligibleNode(n) {
		return true
	}
	return !sameProviderNode(ProviderNode(o), ProviderNode(n))
}

// sameProviderNode compares field by field: netip.Addr has unexported
// fields, which reflection-based equality (equality.Semantic) panics on.
func sameProviderNode(a, b providers.Node) bool {
	return a.Name == b.Name && a.ProviderID == b.ProviderID && a.Zone == b.Zone &&
		slices.Equal(a.InternalIPs, b.InternalIPs) && slices.Equal(a.ExternalIPs, b.ExternalIPs)
}

// NodeIP is the node's first InternalIP, IPv4 preferred.
func NodeIP(n *corev1.Node) (netip.Addr, bool) {
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
