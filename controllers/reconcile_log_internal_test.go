package controllers

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// TestReconcileLogNamesServiceOnce: controller-runtime's logger for a
// reconcile already names the Service ("Service", "namespace", "name"); the
// reconcile adds no second "Service" key (a duplicate key in every JSON log
// line, and zap encodes added values on every reconcile, logged or not).
func TestReconcileLogNamesServiceOnce(t *testing.T) {
	const class = "lb.portico.dev/memory"
	svc := gen.Service("ns", "web", gen.WithClass(class), gen.ForAPI())
	c := kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).WithObjects(svc).
		WithStatusSubresource(svc, &lbv1.LoadBalancer{}).Build()
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 4})
	// As controller-runtime's builder names a reconcile's object.
	log = log.WithValues("controller", "service", "Service", klog.KRef("ns", "web"), "namespace", "ns", "name", "web")
	ctx := logr.NewContext(context.Background(), log)
	r := &ServiceReconciler{Client: c, Metrics: NewMetrics(nil), ClusterID: "test",
		Providers: map[string]providers.Provider{class: memory.New(memory.Options{ClusterID: "test"})}}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(svc)}); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatal("the reconcile logged nothing at V(4); the test cannot see its keys")
	}
	for _, l := range lines {
		if n := strings.Count(l, `"Service"=`); n != 1 {
			t.Errorf("log line names the Service %d times: %s", n, l)
		}
	}
}
