// Package kubeindextest models what a cache read of EndpointSlices costs,
// for tests of the callers of package kubeindex.
package kubeindextest

import (
	"context"

	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/kubeindex"
)

// Walks returns how many EndpointSlices controller-runtime's informer cache
// reader (pkg/cache/internal.CacheReader.List) walks to answer a List with
// opts whose result is list: a List by the SliceService index walks only
// what the index holds for the key; any other List (a label selector) walks
// every slice in the namespace, or in the cluster. r reads the same objects.
func Walks(ctx context.Context, r client.Reader, list client.ObjectList, opts ...client.ListOption) (int, error) {
	l, ok := list.(*discoveryv1.EndpointSliceList)
	if !ok {
		return 0, nil
	}
	var o client.ListOptions
	o.ApplyOptions(opts)
	if o.FieldSelector != nil {
		if _, indexed := o.FieldSelector.RequiresExactMatch(kubeindex.SliceService); indexed {
			return len(l.Items), nil
		}
	}
	var all discoveryv1.EndpointSliceList
	if err := r.List(ctx, &all, client.InNamespace(o.Namespace)); err != nil {
		return 0, err
	}
	return len(all.Items), nil
}

// WalkCounting wraps a client and adds up Walks over its Lists.
type WalkCounting struct {
	client.Client
	Walked int
}

func (c *WalkCounting) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	n, err := Walks(ctx, c.Client, list, opts...)
	c.Walked += n
	return err
}

// WithIndexes adds to a fake client builder the EndpointSlice index that the
// operator's and the forwarder's caches carry.
func WithIndexes(b *fake.ClientBuilder) *fake.ClientBuilder {
	return b.WithIndex(&discoveryv1.EndpointSlice{}, kubeindex.SliceService, kubeindex.SliceServiceValue)
}
