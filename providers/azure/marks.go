package azure

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// Portico's three ownership marks (cluster, service, managed-by; see
// docs/architecture.md, "Ownership marks per cloud") as Azure spells them.
//
// Tags: Azure tag names may not contain <, >, %, &, \, ? or /
// (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/tag-resources#limitations),
// so the names are portico-cluster, portico-service and portico-managed-by.
// Tag values may contain '/', so the service mark stays <namespace>/<name>
// (at most 127 characters of the 256 allowed).
//
// Earlier versions wrote portico.dev/cluster and friends, which Azure
// rejects: no load balancer or public IP could ever be created with them,
// so there is nothing to migrate and the old names are not read.
const (
	TagCluster   = "portico-cluster"
	TagService   = "portico-service"
	TagManagedBy = "portico-managed-by"
)

// NSG security rules cannot be tagged: the rule's description carries the
// marks as "key=value" pairs separated by ";". Azure restricts descriptions
// to 140 characters
// (https://learn.microsoft.com/en-us/rest/api/virtualnetwork/security-rules/create-or-update#securityrule),
// so the keys are short, and when the service mark would not fit it is
// written as the first 32 hex digits of the SHA-256 of <namespace>/<name>:
//
//	managed-by=portico;cluster=<cluster-id>;service=<namespace>/<name>
//	managed-by=portico;cluster=<cluster-id>;service-sha256=<32 hex>
//
// With a cluster ID of at most 63 characters the second form is at most 138.
const (
	descManagedBy     = "managed-by"
	descCluster       = "cluster"
	descService       = "service"
	descServiceSHA256 = "service-sha256"
	maxDescription    = 140
	// hashedServicePrefix marks a hashed service in the logical marks.
	hashedServicePrefix = "sha256:"
)

// ownershipTags returns key's marks as Azure tags.
func ownershipTags(key providers.Key) map[string]*string {
	return map[string]*string{
		TagCluster:   ptr(key.ClusterID),
		TagService:   ptr(key.Namespace + "/" + key.Name),
		TagManagedBy: ptr(providers.ManagedByValue),
	}
}

// clusterTags mark a shared load balancer: Portico's, of cluster id, and of
// no single Service.
func clusterTags(id string) map[string]*string {
	return map[string]*string{
		TagCluster:   ptr(id),
		TagManagedBy: ptr(providers.ManagedByValue),
	}
}

// tagMarks reads Azure tags into the logical marks (providers.TagCluster,
// providers.TagService, providers.TagManagedBy keys).
func tagMarks(tags map[string]*string) map[string]string {
	out := map[string]string{}
	for azureName, logical := range map[string]string{TagCluster: providers.TagCluster, TagService: providers.TagService, TagManagedBy: providers.TagManagedBy} {
		if v, ok := tags[azureName]; ok && v != nil {
			out[logical] = *v
		}
	}
	return out
}

// serviceHash is the hashed service mark of key.
func serviceHash(key providers.Key) string {
	sum := sha256.Sum256([]byte(key.Namespace + "/" + key.Name))
	return hex.EncodeToString(sum[:16])
}

// ruleDescription encodes key's marks in at most 140 characters for any
// valid cluster ID.
func ruleDescription(key providers.Key) string {
	head := descManagedBy + "=" + providers.ManagedByValue + ";" + descCluster + "=" + key.ClusterID + ";"
	if d := head + descService + "=" + key.Namespace + "/" + key.Name; len(d) <= maxDescription {
		return d
	}
	return head + descServiceSHA256 + "=" + serviceHash(key)
}

// descriptionMarks decodes ruleDescription's format into the logical marks;
// a hashed service mark reads as "sha256:<hex>".
func descriptionMarks(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case descManagedBy:
			out[providers.TagManagedBy] = v
		case descCluster:
			out[providers.TagCluster] = v
		case descService:
			out[providers.TagService] = v
		case descServiceSHA256:
			if _, seen := out[providers.TagService]; !seen {
				out[providers.TagService] = hashedServicePrefix + v
			}
		}
	}
	return out
}

// owns reports whether logical marks (from tagMarks or descriptionMarks)
// mark a resource as Portico's for key: managed by Portico, of key's
// cluster, and of key's Service by name or by hash.
func owns(marks map[string]string, key providers.Key) bool {
	if providers.Owns(marks, key) {
		return true
	}
	return marks[providers.TagManagedBy] == providers.ManagedByValue &&
		marks[providers.TagCluster] == key.ClusterID &&
		marks[providers.TagService] == hashedServicePrefix+serviceHash(key)
}

// ClusterOwned reports whether Azure tags mark a resource as Portico's in
// cluster id, for any Service (leftover checks).
func ClusterOwned(tags map[string]*string, id string) bool {
	m := tagMarks(tags)
	return m[providers.TagManagedBy] == providers.ManagedByValue && m[providers.TagCluster] == id
}

// RuleClusterOwned reports whether an NSG rule description marks the rule
// as Portico's in cluster id, for any Service.
func RuleClusterOwned(description, id string) bool {
	m := descriptionMarks(description)
	return m[providers.TagManagedBy] == providers.ManagedByValue && m[providers.TagCluster] == id
}
