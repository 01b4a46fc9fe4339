package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
)

// Cluster identity
//
// The cluster ID is the first of the three ownership marks and goes into
// every per-cluster cloud name (see docs/architecture.md, "Ownership"). Two
// clusters that share a cloud account, project or resource group must never
// share an ID, so the operator never runs a cloud backend on an implicit,
// shared one: without --cluster-id it derives one from the UID of the
// kube-system namespace (DeriveClusterID), which is unique per cluster and
// stable for its life.
//
// One rule fits where the ID lands in every cloud (ValidateClusterID):
//   - GCP: the portico-cluster label value, which allows only lowercase
//     letters, digits, '-' and '_', at most 63 characters
//     (https://cloud.google.com/compute/docs/labeling-resources#requirements);
//   - Azure: the shared load balancers portico-<id> and portico-<id>-internal,
//     at most 80 characters of letters, digits, '_', '.', '-'
//     (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftnetwork),
//     and the portico.dev/cluster tag value (at most 256 characters);
//   - AWS: the portico.dev/cluster tag value (at most 256 characters), the
//     kubernetes.io/cluster/<id> subnet tag key by default (at most 128
//     characters), and the security group description (at most 255 ASCII
//     characters) (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions).
//
// An RFC 1123 label (lowercase letters, digits and '-', starting and ending
// with a letter or digit, 1-63 characters) satisfies all of them.

// MaxClusterIDLength is the longest cluster ID (GCP label values).
const MaxClusterIDLength = 63

var clusterIDRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateClusterID reports whether id can name a cluster in every cloud.
func ValidateClusterID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("cluster ID is empty")
	case len(id) > MaxClusterIDLength:
		return fmt.Errorf("cluster ID %q is %d characters long; at most %d fit a GCP label value and Azure's load balancer names", id, len(id), MaxClusterIDLength)
	case !clusterIDRE.MatchString(id):
		return fmt.Errorf("cluster ID %q: use lowercase letters, digits and '-', starting and ending with a letter or digit (GCP labels allow no uppercase, Azure names and AWS tag keys no '/')", id)
	}
	return nil
}

// DerivedClusterIDPrefix starts every derived cluster ID.
const DerivedClusterIDPrefix = "k8s-"

// DeriveClusterID returns the cluster ID derived from the UID of the
// cluster's kube-system namespace: "k8s-" and the first 16 hex digits of its
// SHA-256. The UID is assigned once when the cluster is created, so the ID is
// stable for the cluster's life and differs between clusters.
func DeriveClusterID(kubeSystemUID string) string {
	sum := sha256.Sum256([]byte(kubeSystemUID))
	return DerivedClusterIDPrefix + hex.EncodeToString(sum[:])[:16]
}
