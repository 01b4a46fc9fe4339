// Package kubeindex holds the informer-cache indexes that the operator and
// the forwarder share, and the reads that use them.
//
// A controller-runtime cache answers a label-selector List by walking every
// object in the namespace (pkg/cache/internal.CacheReader.List): reading the
// EndpointSlices of one Service that way costs a pass over every slice in
// its namespace, on every reconcile and every sync. An index answers it with
// one map lookup.
package kubeindex

import (
	"context"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SliceService is the field index of EndpointSlices by the name of the
// Service they belong to (label kubernetes.io/service-name), within their
// namespace.
const SliceService = "portico.endpointslice.service"

// SliceServiceValue is SliceService's index function.
func SliceServiceValue(obj client.Object) []string {
	if name := obj.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
		return []string{name}
	}
	return nil
}

// Register adds the indexes to a manager's cache (mgr.GetFieldIndexer());
// call it before the cache starts.
func Register(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &discoveryv1.EndpointSlice{}, SliceService, SliceServiceValue)
}

// EndpointSlicesOf lists the EndpointSlices of Service svc through the
// SliceService index. opts may add client.UnsafeDisableDeepCopy for a
// caller that only reads.
func EndpointSlicesOf(ctx context.Context, r client.Reader, svc types.NamespacedName, opts ...client.ListOption) ([]discoveryv1.EndpointSlice, error) {
	var list discoveryv1.EndpointSliceList
	opts = append([]client.ListOption{client.InNamespace(svc.Namespace), client.MatchingFields{SliceService: svc.Name}}, opts...)
	if err := r.List(ctx, &list, opts...); err != nil {
		return nil, err
	}
	return list.Items, nil
}
