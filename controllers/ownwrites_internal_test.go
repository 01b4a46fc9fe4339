package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// TestStaleCacheCostsNoSecondFinalizer: a reconcile right after the one that
// added the finalizer and created the record (kube-controller-manager's
// EndpointSlice for the new Service queues it at once) may read a cache that
// shows neither yet. What this process wrote counts as written: no second
// finalizer patch (which the optimistic lock refused, an error and a retry
// for about one Service in ten at 50 creates/s in bench-reconcile) and no
// second record create (AlreadyExists, then a cache miss and an error).
func TestStaleCacheCostsNoSecondFinalizer(t *testing.T) {
	ctx := context.Background()
	const class = "lb.portico.dev/memory"
	svc := gen.Service("ns", "web", gen.WithClass(class), gen.ForAPI())
	svc.UID = "uid-web"
	var stale *corev1.Service // the Service as the lagging cache shows it
	var writes []string
	c := kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).WithObjects(svc).WithStatusSubresource(svc, &lbv1.LoadBalancer{}).
		WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if stale == nil {
					return c.Get(ctx, key, obj, opts...)
				}
				switch o := obj.(type) {
				case *corev1.Service:
					stale.DeepCopyInto(o)
					return nil
				case *lbv1.LoadBalancer:
					return apierrors.NewNotFound(schema.GroupResource{Group: lbv1.GroupVersion.Group, Resource: "loadbalancers"}, key.Name)
				}
				return c.Get(ctx, key, obj, opts...)
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				writes = append(writes, fmt.Sprintf("patch %T %s", obj, obj.GetName()))
				return c.Patch(ctx, obj, patch, opts...)
			},
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				writes = append(writes, fmt.Sprintf("create %T %s", obj, obj.GetName()))
				return c.Create(ctx, obj, opts...)
			},
		}).Build()
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	r := &ServiceReconciler{Client: c, Metrics: NewMetrics(nil), ClusterID: "test",
		Providers: map[string]providers.Provider{class: memory.New(memory.Options{ClusterID: "test"})}}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(svc)}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	first := len(writes)
	stale = svc.DeepCopy()
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatalf("reconcile on a cache that predates this process's own writes: %v (writes %v)", err, writes)
	}
	for _, w := range writes[first:] {
		if strings.HasPrefix(w, "patch *v1.Service") || strings.HasPrefix(w, "create") {
			t.Errorf("the reconcile on a stale cache wrote again: %v (all writes %v)", writes[first:], writes)
			break
		}
	}
	got := &corev1.Service{}
	stale = nil
	if err := c.Get(ctx, req.NamespacedName, got); err != nil || !strings.Contains(strings.Join(got.Finalizers, ","), Finalizer) {
		t.Fatalf("finalizer lost: %v %v", got.Finalizers, err)
	}
}
