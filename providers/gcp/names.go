package gcp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// Naming and ownership
//
// Most Compute Engine resources carry no labels (backend services, health
// checks, instance groups, firewalls), so Portico identifies its resources in
// two ways at once:
//
//   - Deterministic names. Per Service: BaseName(key) = "portico-" + the
//     first 16 hex digits of sha256(cluster/namespace/name), used for the
//     address, the backend service, the health check and the traffic
//     firewall; BaseName+"-hc" for the health-check firewall, BaseName+"-deny"
//     for the rule that denies everyone outside loadBalancerSourceRanges, and
//     BaseName+"-tcp" / "-udp" for the forwarding rules. Per cluster and zone:
//     InstanceGroupName(cluster) = "portico-ig-" + 16 hex digits of
//     sha256(cluster), shared by every Service of the cluster (an instance may
//     belong to at most one load-balanced instance group).
//   - Ownership marks in the description: a JSON object with the keys of
//     providers.OwnershipTags (portico.dev/cluster, portico.dev/service,
//     portico.dev/managed-by). Instance groups carry only cluster and
//     managed-by. Addresses and forwarding rules additionally carry labels
//     (portico-managed-by, portico-cluster, portico-service) for billing
//     reports and filtering; the description is what ownership is decided on.
//
// A resource under a Portico name whose description lacks the marks, or
// carries another key's, is never modified or deleted: Ensure returns a
// *providers.NotOwnedError and Delete leaves it alone.

// BaseName is the deterministic per-Service name stem.
func BaseName(key providers.Key) string {
	return "portico-" + hash16(key.ClusterID+"/"+key.Namespace+"/"+key.Name)
}

// InstanceGroupName is the name of the cluster's instance group in every zone.
func InstanceGroupName(clusterID string) string {
	return "portico-ig-" + hash16(clusterID)
}

// ForwardingRuleName is the name of the rule for one protocol.
func ForwardingRuleName(key providers.Key, proto providers.Protocol) string {
	return BaseName(key) + "-" + strings.ToLower(string(proto))
}

// HealthCheckFirewallName is the firewall admitting health-check probes.
func HealthCheckFirewallName(key providers.Key) string { return BaseName(key) + "-hc" }

// DenyFirewallName is the firewall denying every source outside the
// Service's loadBalancerSourceRanges, present only when ranges are set.
func DenyFirewallName(key providers.Key) string { return BaseName(key) + "-deny" }

// firewallNames are every firewall rule a Service may have.
func firewallNames(key providers.Key) []string {
	return []string{BaseName(key), HealthCheckFirewallName(key), DenyFirewallName(key)}
}

// firewallPriority is the priority of Portico's allow rules; the deny rule
// takes the next one.
const firewallPriority = 1000

func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:16]
}

// markRegion is provider bookkeeping in the description of the global
// firewall rules: the region of the load balancer they serve. Names and
// ownership marks depend only on cluster ID and Service, so two clusters given
// the same --cluster-id in two regions of one project would otherwise share
// (and rewrite, and delete) each other's firewall rules.
const markRegion = "portico.dev/region"

// description is the JSON ownership mark of a per-Service resource. extra
// holds provider bookkeeping (such as the Service ports a forwarding rule
// carries); it is merged into the object.
func description(key providers.Key, extra map[string]string) string {
	m := providers.OwnershipTags(key)
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m) // map[string]string always marshals
	return string(b)
}

// clusterDescription is the ownership mark of a cluster-shared resource.
func clusterDescription(clusterID string) string {
	b, _ := json.Marshal(map[string]string{
		providers.TagCluster:   clusterID,
		providers.TagManagedBy: providers.ManagedByValue,
	})
	return string(b)
}

// Marks parses a description into ownership marks; a description that is
// not a JSON object of strings yields nil.
func Marks(desc string) map[string]string {
	var m map[string]string
	if json.Unmarshal([]byte(desc), &m) != nil {
		return nil
	}
	return m
}

// ownedBy reports whether a description marks a resource as key's.
func ownedBy(desc string, key providers.Key) bool { return providers.Owns(Marks(desc), key) }

// ownedByCluster reports whether a description marks a cluster-shared
// resource as the cluster's.
func ownedByCluster(desc, clusterID string) bool {
	m := Marks(desc)
	return m[providers.TagManagedBy] == providers.ManagedByValue && m[providers.TagCluster] == clusterID
}

// labels are the labels put on resources that support them. Label values
// allow only lowercase letters, digits, '-' and '_' (63 at most).
func labels(key providers.Key) map[string]string {
	return map[string]string{
		"portico-managed-by": providers.ManagedByValue,
		"portico-cluster":    labelValue(key.ClusterID),
		"portico-service":    hash16(key.ClusterID + "/" + key.Namespace + "/" + key.Name),
	}
}

func labelValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 63 {
		out = out[:63]
	}
	return out
}
