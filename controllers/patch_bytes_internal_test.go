package controllers

import (
	"context"
	"math"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/providers"
)

// Bytes allocated to build the patch of one status write, at most. In
// bench-scale's node flap all 10,000 records are written at once, and what
// the operator allocates meanwhile counts as live to the garbage collector:
// building each patch by marshalling both whole objects and diffing them
// as maps (controller-runtime's MergeFrom and StrategicMergeFrom) cost
// about 75 MB of the flap's first 25 s (issue 18, item 4).
const (
	maxRecordPatchBytes  = 2048
	maxServicePatchBytes = 12 << 10
)

// TestStatusPatchBytes measures the bytes allocated to build the patch of
// a status write, and its data, from the objects the reconciler's writes
// hand to the client: a record status write after a node change (backends,
// hash, sync time), an endpoints write, and Service status writes (the
// first address, a Serving change). It logs what controller-runtime's
// MergeFrom and StrategicMergeFrom of the whole objects cost beside it.
func TestStatusPatchBytes(t *testing.T) {
	ctx := context.Background()
	svc := typicalService()
	rec := typicalRecord(svc)
	st := typicalProviderStatus()
	st.Backends = providers.Backends{Total: 4, Healthy: 4}
	eps := lbv1.EndpointsStatus{Ready: 3, Total: 3, Nodes: []string{"kwok-node-17", "kwok-node-2", "kwok-node-31"}}
	fresh := svc.DeepCopy()
	fresh.Status = corev1.ServiceStatus{}
	for _, tc := range []struct {
		name  string
		old   client.Object // as the write found it
		write func(r *ServiceReconciler) error
	}{
		{"record after a node change", rec, func(r *ServiceReconciler) error {
			return r.writeRecord(ctx, svc.DeepCopy(), rec.DeepCopy(), "lb.portico.dev/memory", st, "hash-after-node-change", rec.Status.Endpoints.DeepCopy(), nil)
		}},
		{"record endpoints", rec, func(r *ServiceReconciler) error {
			return r.writeEndpoints(ctx, rec.DeepCopy(), eps)
		}},
		{"Service first address", fresh, func(r *ServiceReconciler) error {
			return r.writeServiceStatus(ctx, fresh.DeepCopy(), ingressOf(typicalProviderStatus()), readyCondition(svc.Generation, typicalProviderStatus()),
				metav1.Condition{Type: ConditionServing, Status: metav1.ConditionTrue, Reason: ReasonEndpointsReady, Message: "2 ready endpoints"})
		}},
		{"Service serving change", svc, func(r *ServiceReconciler) error {
			return r.writeServiceStatus(ctx, svc.DeepCopy(), svc.Status.LoadBalancer.Ingress,
				metav1.Condition{Type: ConditionServing, Status: metav1.ConditionFalse, Reason: ReasonNoEndpoints, Message: "no ready endpoints"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &patchCapture{}
			r := &ServiceReconciler{Client: c.client(svc, rec)}
			if err := tc.write(r); err != nil {
				t.Fatal(err)
			}
			if len(c.written) != 1 {
				t.Fatalf("%d patches, want 1", len(c.written))
			}
			var build, before func() (client.Patch, error)
			max := maxRecordPatchBytes
			switch obj := c.written[0].(type) {
			case *lbv1.LoadBalancer:
				old := tc.old.(*lbv1.LoadBalancer)
				build = func() (client.Patch, error) { return recordStatusPatch(&old.Status, obj) }
				orig := withStatus(obj, old.Status)
				before = func() (client.Patch, error) { return client.MergeFrom(orig), nil }
			case *corev1.Service:
				old := tc.old.(*corev1.Service)
				build = func() (client.Patch, error) { return serviceStatusPatch(&old.Status, obj) }
				orig := withStatus(obj, old.Status)
				before = func() (client.Patch, error) { return client.StrategicMergeFrom(orig), nil }
				max = maxServicePatchBytes
			}
			data, bytes := patchBytes(t, build, c.written[0])
			_, beforeBytes := patchBytes(t, before, c.written[0])
			t.Logf("%d bytes allocated (whole-object diff: %d) to build %s", bytes, beforeBytes, data)
			if bytes > max {
				t.Errorf("building the patch allocated %d bytes, want at most %d", bytes, max)
			}
		})
	}
}

// withStatus returns a copy of obj with status old: the object a write
// started from.
func withStatus[T client.Object, S any](obj T, old S) T {
	o := obj.DeepCopyObject().(T)
	reflect.ValueOf(o).Elem().FieldByName("Status").Set(reflect.ValueOf(old))
	return o
}

// patchBytes returns the data of the patch build makes for obj and the
// bytes that building it and its data allocate.
func patchBytes(t *testing.T, build func() (client.Patch, error), obj client.Object) ([]byte, int) {
	t.Helper()
	var data []byte
	var err error
	bytes := allocatedBytes(100, func() {
		var p client.Patch
		if p, err = build(); err == nil {
			data, err = p.Data(obj)
		}
	})
	if err != nil {
		t.Fatalf("building the patch: %v", err)
	}
	return data, bytes
}

// patchCapture is a client that records the object of every status patch
// and answers as if it had been applied.
type patchCapture struct {
	written []client.Object
}

func (pc *patchCapture) client(objs ...client.Object) client.Client {
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(_ context.Context, _ client.Client, _ string, obj client.Object, _ client.Patch, _ ...client.SubResourcePatchOption) error {
			pc.written = append(pc.written, obj.DeepCopyObject().(client.Object))
			return nil
		}}).Build()
}

// allocatedBytes returns the bytes f allocates per call: the least of a
// few rounds' averages over runs calls, since whatever else runs in the test
// process (the operators of earlier tests winding down) only ever adds to a
// round.
func allocatedBytes(runs int, f func()) int {
	const rounds = 5
	f() // warm caches (type information) as a running operator has
	least := uint64(math.MaxUint64)
	for range rounds {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range runs {
			f()
		}
		runtime.ReadMemStats(&after)
		least = min(least, (after.TotalAlloc-before.TotalAlloc)/uint64(runs))
	}
	return int(least)
}

// typicalService is a LoadBalancer Service as the operator's cache holds it
// once addressed (kubectl's last-applied configuration and managedFields
// trimmed).
func typicalService() *corev1.Service {
	since := metav1.NewTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "svc-04217", UID: types.UID("8c2f6a0e-5d7b-4b53-9a51-3f2b8f0e4a17"),
			ResourceVersion: "918273", Generation: 1, CreationTimestamp: since,
			Labels:     map[string]string{"app": "svc-04217", "app.kubernetes.io/part-of": "bench"},
			Finalizers: []string{Finalizer}},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To("lb.portico.dev/memory"),
			Selector:          map[string]string{"app": "svc-04217"},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 31080},
				{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(8443), NodePort: 31443},
			},
			ClusterIP: "10.96.17.42", ClusterIPs: []string{"10.96.17.42"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
			SessionAffinity: corev1.ServiceAffinityNone, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster), AllocateLoadBalancerNodePorts: ptr.To(true),
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: ingressOf(typicalProviderStatus())},
			Conditions: []metav1.Condition{
				{Type: ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: 1, LastTransitionTime: since, Reason: ReasonEnsured, Message: "load balancer is provisioned"},
				{Type: ConditionServing, Status: metav1.ConditionTrue, ObservedGeneration: 1, LastTransitionTime: since, Reason: ReasonEndpointsReady, Message: "2 ready endpoints"},
			},
		},
	}
}

// typicalProviderStatus is what the memory backend reports for a Service
// with two ports on three nodes.
func typicalProviderStatus() *providers.Status {
	return &providers.Status{
		Ingress: []providers.Ingress{{IP: netip.MustParseAddr("198.51.100.17"), IPMode: providers.IPModeVIP}},
		Ports:   []providers.PortStatus{{Port: 80, Protocol: "TCP"}, {Port: 443, Protocol: "TCP"}},
		Resources: []providers.Resource{{Kind: "loadBalancer", ID: "bench-svc-04217"},
			{Kind: "listener", ID: "bench-svc-04217/TCP/443"}, {Kind: "listener", ID: "bench-svc-04217/TCP/80"}},
		Backends: providers.Backends{Total: 3, Healthy: 3},
	}
}

// typicalRecord is svc's LoadBalancer record as the operator's cache holds
// it after the memory backend built the load balancer, with a priced cost.
func typicalRecord(svc *corev1.Service) *lbv1.LoadBalancer {
	since := metav1.NewTime(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	rec := &lbv1.LoadBalancer{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name, UID: "1f0c9d3e-77a2-4c1b-8e0f-2b6d9a4c5e31",
			ResourceVersion: "918301", Generation: 1, CreationTimestamp: since,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: lbv1.LoadBalancerSpec{Class: "lb.portico.dev/memory"},
	}
	s := &rec.Status
	s.Class = "lb.portico.dev/memory"
	fillRecordStatus(s, typicalProviderStatus())
	s.Endpoints = &lbv1.EndpointsStatus{Ready: 2, Total: 3, Nodes: []string{"kwok-node-17", "kwok-node-2"}}
	s.Conditions = []metav1.Condition{
		{Type: ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: 1, LastTransitionTime: since, Reason: ReasonEnsured, Message: "load balancer is provisioned"},
		{Type: "lb.portico.dev/Priced", Status: metav1.ConditionTrue, ObservedGeneration: 1, LastTransitionTime: since, Reason: "Priced", Message: "priced from embedded:memory-2026-10-01"},
	}
	s.Ready = string(metav1.ConditionTrue)
	s.Cost = &lbv1.CostStatus{Hourly: "0.0100", Monthly: "7.30", Currency: "USD", Source: "embedded:memory-2026-10-01",
		Breakdown: []lbv1.CostItem{{Item: "lb-hour", Quantity: 1, Hourly: "0.0100"}}}
	s.MonthlyCost = "7.30 USD"
	s.LastSyncTime = &since
	s.AppliedHash = "hash-before-node-change"
	s.ObservedGeneration = 1
	return rec
}
