package providers

import (
	"context"
	"strings"
)

// Owned is one backend resource that carries this cluster's ownership marks.
type Owned struct {
	// Kind is the backend's resource kind ("loadBalancer", "targetGroup",
	// "instanceGroup", ...).
	Kind string
	// ID identifies the resource in the backend (ARN, self link, ID).
	ID string
	// Service is the Service named by the resource's service mark. Empty for
	// per-cluster resources that no single Service owns (a GCP instance
	// group, an Azure shared load balancer).
	Service Key
	// Fingerprint identifies the Service when the resource's marks name it
	// only by a digest (an Azure frontend named from a hash of the key, an
	// NSG rule whose description holds the hashed service mark): it is the
	// backend's Fingerprint of that Service's key.
	Fingerprint string
	// Unreferenced is set by the backend on a per-cluster resource that no
	// load balancer uses any more: such a resource is an orphan whatever
	// Services exist.
	Unreferenced bool
}

// OrphanScanner is implemented by backends that can list what they built for
// a cluster, so the operator can find resources whose Service is gone (a
// finalizer removed by hand, a Delete interrupted before it finished).
type OrphanScanner interface {
	// ListOwned returns every resource carrying the ownership marks of
	// clusterID. It never changes anything.
	ListOwned(ctx context.Context, clusterID string) ([]Owned, error)
	// Fingerprint is what ListOwned reports as Owned.Fingerprint for
	// key's resources whose marks hold only a digest of the Service.
	Fingerprint(key Key) string
	// DeleteOrphan removes one resource ListOwned reported without a
	// Service name (Unreferenced, or known only by Fingerprint), after
	// checking again that it carries clusterID's marks. Resources whose
	// Service is named are removed through Delete.
	DeleteOrphan(ctx context.Context, clusterID string, o Owned) error
}

// ServiceFromMark parses a service mark ("namespace/name") into a Key of
// clusterID; ok is false when the mark is malformed.
func ServiceFromMark(clusterID, mark string) (Key, bool) {
	ns, name, ok := strings.Cut(mark, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Key{}, false
	}
	return Key{ClusterID: clusterID, Namespace: ns, Name: name}, true
}
