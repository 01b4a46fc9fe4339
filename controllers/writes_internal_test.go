package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/scheme"
)

// TestStaleRecordCostsNoSecondWrite: the reconcile after an Ensure reads the
// record from a cache that may not show the endpoints the Ensure just wrote;
// what this process wrote counts as written, so nothing is patched again.
// Endpoints that really changed are still written.
func TestStaleRecordCostsNoSecondWrite(t *testing.T) {
	ctx := context.Background()
	stale := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	patches := 0
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(stale.DeepCopy()).WithStatusSubresource(stale).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			patches++
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}}).Build()
	r := &ServiceReconciler{Client: c}
	key := client.ObjectKeyFromObject(stale)
	written := lbv1.EndpointsStatus{Ready: 2, Total: 2}
	r.remember(key, "hash", nil, nil)
	r.wroteEndpoints(key, &written, true)

	if err := r.writeEndpoints(ctx, stale.DeepCopy(), written); err != nil {
		t.Fatal(err)
	}
	if patches != 0 {
		t.Fatalf("endpoints this process wrote were patched again from a stale record (%d patches)", patches)
	}
	changed := lbv1.EndpointsStatus{Ready: 1, Total: 2}
	if err := r.writeEndpoints(ctx, stale.DeepCopy(), changed); err != nil {
		t.Fatal(err)
	}
	if patches != 1 {
		t.Fatalf("changed endpoints: %d patches, want 1", patches)
	}
	if err := r.writeEndpoints(ctx, stale.DeepCopy(), changed); err != nil || patches != 1 {
		t.Fatalf("the same change again: %d patches (%v)", patches, err)
	}
}
