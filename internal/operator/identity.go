package operator

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/providers"
)

// Reading the kube-system namespace (the identity source) needs only get on
// namespaces, which the Service controller's role already grants
// (controllers/service_controller.go).

// ReasonClusterIdentity is the reason of the Event that reports the cluster
// ID the operator runs with.
const ReasonClusterIdentity = "ClusterIdentity"

// IdentityNamespace is the namespace whose UID identifies the cluster.
const IdentityNamespace = metav1.NamespaceSystem

// ClusterIdentity is the cluster ID the operator runs with and where it came
// from.
type ClusterIdentity struct {
	ID string
	// Derived is true when the ID was derived from the kube-system UID
	// because --cluster-id was empty.
	Derived bool
	// Source explains the ID: "--cluster-id" or "kube-system namespace UID <uid>".
	Source string
}

// ResolveClusterID returns the cluster ID: an explicit one (already
// validated), else the one derived from the kube-system namespace's UID.
// It never falls back to a fixed name: a cluster whose kube-system namespace
// cannot be read does not start.
func ResolveClusterID(ctx context.Context, r client.Reader, explicit string) (ClusterIdentity, error) {
	if explicit != "" {
		if err := providers.ValidateClusterID(explicit); err != nil {
			return ClusterIdentity{}, fmt.Errorf("--cluster-id: %w", err)
		}
		return ClusterIdentity{ID: explicit, Source: "--cluster-id"}, nil
	}
	var ns corev1.Namespace
	if err := r.Get(ctx, types.NamespacedName{Name: IdentityNamespace}, &ns); err != nil {
		return ClusterIdentity{}, fmt.Errorf("--cluster-id is empty and the cluster ID cannot be derived from namespace %s: %w", IdentityNamespace, err)
	}
	if ns.UID == "" {
		return ClusterIdentity{}, fmt.Errorf("--cluster-id is empty and namespace %s has no UID", IdentityNamespace)
	}
	return ClusterIdentity{
		ID:      providers.DeriveClusterID(string(ns.UID)),
		Derived: true,
		Source:  fmt.Sprintf("namespace %s UID %s", IdentityNamespace, ns.UID),
	}, nil
}
