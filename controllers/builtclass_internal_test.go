package controllers

import (
	"context"
	"testing"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/kubeindex/kubeindextest"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// TestClassChangeBeforeTheRecord: a memory (cloud-like) Service's record
// follows its address, so a process can stop after the backend built the
// load balancer and before the record exists. The class named beside the
// finalizer then says which backend built it. When the next process serves
// class-less Services through another class (--default-class changed across
// the restart), the Service keeps the load balancer it has (ClassNotServed,
// as with a record) instead of getting a second one from the new class while
// the first is forgotten; released, it is deleted through the class that
// built it.
func TestClassChangeBeforeTheRecord(t *testing.T) {
	ctx := context.Background()
	const classA, classB = "lb.portico.dev/memory", "lb.portico.dev/memory-b"
	a := memory.New(memory.Options{ClusterID: "test"})
	b := memory.New(memory.Options{ClusterID: "test", Class: classB})
	svc := gen.Service("ns", "web") // no class: the default class serves it
	svc.UID = "uid-web"
	c := kubeindextest.WithIndexes(fake.NewClientBuilder().WithScheme(scheme.New())).
		WithObjects(svc, gen.Node("n1", "10.0.0.1")).WithStatusSubresource(svc, &lbv1.LoadBalancer{}).Build()
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(svc)}
	provs := map[string]providers.Provider{classA: a, classB: b}

	first := &ServiceReconciler{Client: c, Metrics: NewMetrics(nil), ClusterID: "test", Providers: provs, DefaultClass: classA}
	if _, err := first.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if len(a.Resources()) == 0 {
		t.Fatalf("class A built nothing")
	}
	// The process stops here, before its record pass.
	if err := c.Get(ctx, req.NamespacedName, &lbv1.LoadBalancer{}); !apierrors.IsNotFound(err) {
		t.Fatalf("record after the address's reconcile: %v, want none yet", err)
	}
	var got corev1.Service
	if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.LoadBalancer.Ingress) == 0 || got.Annotations[model.AnnotationBuiltClass] != classA {
		t.Fatalf("after the first reconcile: ingress %v, %s=%q; want an address and %s", got.Status.LoadBalancer.Ingress,
			model.AnnotationBuiltClass, got.Annotations[model.AnnotationBuiltClass], classA)
	}

	next := &ServiceReconciler{Client: c, Metrics: NewMetrics(nil), ClusterID: "test", Providers: provs, DefaultClass: classB}
	for range 3 {
		if _, err := next.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.Resources()) == 0 {
		t.Errorf("class A's load balancer was deleted because configuration changed")
	}
	if n := len(b.Resources()); n != 0 {
		t.Errorf("class B built %d resources for a Service class A holds; A's would be forgotten", n)
	}
	if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if cond := meta.FindStatusCondition(got.Status.Conditions, ConditionReady); cond == nil || cond.Reason != ReasonClassNotServed {
		t.Errorf("Ready condition %+v, want reason %s", cond, ReasonClassNotServed)
	}

	got.Annotations[model.AnnotationRelease] = "true"
	if err := c.Update(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if _, err := next.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := len(a.Resources()); n != 0 {
		t.Errorf("released, class A still holds %d resources", n)
	}
	if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Annotations[model.AnnotationBuiltClass]; ok || len(got.Finalizers) != 0 {
		t.Errorf("released: finalizers %v, annotations %v; want neither Portico's finalizer nor %s", got.Finalizers, got.Annotations, model.AnnotationBuiltClass)
	}
}
