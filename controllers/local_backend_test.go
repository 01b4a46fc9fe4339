package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
	"github.com/portico-lb/portico/providers/memory"
)

// TestStranded: a local Service whose address no valid IPPool contains is
// stranded; other classes, and addresses in some valid pool, are not.
func TestStranded(t *testing.T) {
	pools := []lbv1.IPPool{ippool("a", "192.0.2.0/30"), ippool("bad", "127.0.0.0/30")}
	svcs := []corev1.Service{
		localService("kept", localClass, "192.0.2.1"),
		localService("gone", localClass, "198.51.100.1"),
		localService("in-invalid-pool", localClass, "127.0.0.1"),
		localService("dual-half-gone", localClass, "192.0.2.2", "2001:db8::1"),
		localService("pending", localClass),
		localService("aws", "lb.portico.dev/aws", "198.51.100.2"),
	}
	got := fmt.Sprint(local.Stranded(pools, model.OfClass(localClass, svcs, recordsOf(svcs))))
	if want := "[ns/dual-half-gone ns/gone ns/in-invalid-pool]"; got != want {
		t.Fatalf("stranded %s, want %s", got, want)
	}
}

// TestAddressLeavesEveryPool runs the operator with the local backend on the
// real apiserver: deleting the IPPool that holds a Service's address gives
// the Service a condition naming the address and the cause, and drops the
// address from status.loadBalancer.ingress (which the forwarders announce)
// and from the LoadBalancer record. Before, the address stayed in status,
// announced, with the Service Ready, until some later change of the Service.
func TestAddressLeavesEveryPool(t *testing.T) {
	ns := namespace(t)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
		o.ConfigErrorBackoff = time.Minute // keep the condition in view
	})
	ctx := context.Background()
	pool := ippool(fmt.Sprint("leaves-", time.Now().UnixNano()%100000), "203.0.113.64/30")
	pool.Generation = 0
	if err := env.Client.Create(ctx, &pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), &pool) })
	svc := localService("stranded", localClass)
	svc.Namespace = ns
	svc.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	if err := env.Client.Create(ctx, &svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })
	eventually(t, 20*time.Second, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&svc), &svc); err != nil {
			return err
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != "203.0.113.64" {
			return fmt.Errorf("ingress %+v", ing)
		}
		return nil
	})

	if err := env.Client.Delete(ctx, &pool); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&svc), &svc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionReady)
		if len(svc.Status.LoadBalancer.Ingress) != 0 || c == nil || c.Reason != "AddressNotInPool" || !strings.Contains(c.Message, "203.0.113.64") {
			return fmt.Errorf("ingress %+v, condition %+v", svc.Status.LoadBalancer.Ingress, c)
		}
		var rec lbv1.LoadBalancer
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&svc), &rec); err != nil {
			return err
		}
		if len(rec.Status.Addresses) != 0 {
			return fmt.Errorf("record still lists %+v", rec.Status.Addresses)
		}
		return nil
	})
}

// TestSharingRuleOnTheAPIServer runs the operator with the local backend:
// with one sharing key, a Cluster Service holds an address; a Local Service
// of the same namespace may not join it (SharingConflict naming the holder),
// and a Service of another namespace gets an address of its own unless the
// pool allows sharing across namespaces. Before, both joined the address.
func TestSharingRuleOnTheAPIServer(t *testing.T) {
	ns, other := namespace(t), namespace(t)
	withOperator(t, nil, func(o *operator.Options) {
		o.Providers = []string{memory.Name, local.Name}
		o.ConfigErrorBackoff = time.Minute
	})
	ctx := context.Background()
	pool := ippool(fmt.Sprint("share-", time.Now().UnixNano()%100000), "203.0.113.80/30")
	pool.Generation = 0
	if err := env.Client.Create(ctx, &pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), &pool) })
	mk := func(ns, name string, policy corev1.ServiceExternalTrafficPolicy, port int32) *corev1.Service {
		svc := localService(name, localClass)
		svc.Namespace = ns
		svc.Annotations = map[string]string{model.AnnotationAllowSharedIP: "k"}
		svc.Spec.Selector = map[string]string{"app": "web"}
		svc.Spec.ExternalTrafficPolicy = policy
		svc.Spec.Ports = []corev1.ServicePort{{Port: port, Protocol: corev1.ProtocolTCP}}
		if err := env.Client.Create(ctx, &svc); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { testenv.DeleteServiceAndWait(t, env.Client, &svc) })
		return &svc
	}
	status := func(svc *corev1.Service) (string, *metav1.Condition, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return "", nil, err
		}
		ip := ""
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) > 0 {
			ip = ing[0].IP
		}
		return ip, meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionReady), nil
	}
	a := mk(ns, "a", corev1.ServiceExternalTrafficPolicyCluster, 80)
	var addrA string
	eventually(t, 20*time.Second, func() error {
		ip, _, err := status(a)
		if err != nil || ip == "" {
			return fmt.Errorf("a: %q, %v", ip, err)
		}
		addrA = ip
		return nil
	})
	b := mk(ns, "b", corev1.ServiceExternalTrafficPolicyLocal, 443)
	c := mk(other, "c", corev1.ServiceExternalTrafficPolicyCluster, 8080)
	eventually(t, 20*time.Second, func() error {
		ip, cond, err := status(b)
		if err != nil {
			return err
		}
		if ip != "" || cond == nil || cond.Reason != "SharingConflict" || !strings.Contains(cond.Message, ns+"/a") || !strings.Contains(cond.Message, "externalTrafficPolicy") {
			return fmt.Errorf("b: address %q, condition %+v", ip, cond)
		}
		ip, _, err = status(c)
		if err != nil || ip == "" || ip == addrA {
			return fmt.Errorf("c (other namespace): address %q (a has %s), %v", ip, addrA, err)
		}
		return nil
	})
}
