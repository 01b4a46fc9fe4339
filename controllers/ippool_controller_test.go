package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
)

const localClass = "lb.portico.dev/local"

func ippool(name string, addrs ...string) lbv1.IPPool {
	return lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}, Spec: lbv1.IPPoolSpec{Addresses: addrs}}
}

// localService returns a LoadBalancer Service; class "" leaves
// spec.loadBalancerClass unset (the default class's Services).
func localService(name, class string, ips ...string) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	if class != "" {
		s.Spec.LoadBalancerClass = &class
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

// record is the operator's LoadBalancer record of Service name in "ns".
func record(name, class string) lbv1.LoadBalancer {
	return lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: lbv1.LoadBalancerSpec{Class: class}}
}

// recordsOf records every Service that names a class as served by it, except
// those named "unserved" (no operator serves them).
func recordsOf(svcs []corev1.Service) []lbv1.LoadBalancer {
	var out []lbv1.LoadBalancer
	for _, s := range svcs {
		if s.Spec.LoadBalancerClass != nil && s.Name != "unserved" {
			out = append(out, record(s.Name, *s.Spec.LoadBalancerClass))
		}
	}
	return out
}

func TestIPPoolStatus(t *testing.T) {
	avoid := ippool("avoid", "192.0.2.255-192.0.3.1")
	avoid.Spec.AvoidBuggyIPs = true
	tests := []struct {
		name             string
		pool             lbv1.IPPool
		others           []lbv1.IPPool
		svcs             []corev1.Service
		recs             []lbv1.LoadBalancer // besides one per Service of a class
		total, assigned  int64
		valid, exhausted string // condition reasons; "" = absent
		validMsg         string // part of the Valid message, when set
	}{
		{name: "counts and sharing counted once", pool: ippool("a", "192.0.2.0/30"),
			svcs: []corev1.Service{localService("s1", localClass, "192.0.2.1"), localService("s2", localClass, "192.0.2.1"),
				localService("dual", localClass, "192.0.2.2", "2001:db8::1"), localService("aws", "lb.portico.dev/aws", "192.0.2.3")},
			total: 4, assigned: 2, valid: "Valid", exhausted: "AddressesFree"},
		{name: "a Service served through the default class counts", pool: ippool("a", "192.0.2.0/30"),
			svcs:  []corev1.Service{localService("bydefault", "", "192.0.2.1"), localService("unserved", localClass, "192.0.2.2")},
			recs:  []lbv1.LoadBalancer{record("bydefault", localClass)},
			total: 4, assigned: 1, valid: "Valid", exhausted: "AddressesFree"},
		{name: "exhausted", pool: ippool("a", "192.0.2.7"), svcs: []corev1.Service{localService("s", localClass, "192.0.2.7")},
			total: 1, assigned: 1, valid: "Valid", exhausted: "NoFreeAddresses"},
		{name: "avoid buggy", pool: avoid, total: 1, valid: "Valid", exhausted: "AddressesFree"},
		{name: "host bits", pool: ippool("a", "192.0.2.5/24"), valid: "InvalidAddresses"},
		{name: "reversed range", pool: ippool("a", "192.0.2.9-192.0.2.1"), valid: "InvalidAddresses"},
		{name: "loopback", pool: ippool("a", "192.0.2.0/30", "127.0.0.1"), valid: "InvalidAddresses", validMsg: "127.0.0.0/8 (loopback)"},
		{name: "range spanning link-local", pool: ippool("a", "169.253.0.0-169.255.0.0"), valid: "InvalidAddresses", validMsg: "169.254.0.0/16 (link-local)"},
		{name: "whole IPv6 space", pool: ippool("a", "::/0"), valid: "InvalidAddresses", validMsg: "whole IPv6 address space"},
		{name: "overlap within the pool", pool: ippool("a", "192.0.2.0/28", "192.0.2.8-192.0.2.20"), valid: "InvalidAddresses"},
		{name: "overlap with another pool", pool: ippool("a", "192.0.2.0/28"), others: []lbv1.IPPool{ippool("b", "192.0.2.15-192.0.2.30"), ippool("c", "198.51.100.0/24")},
			total: 16, valid: "Overlap", exhausted: "AddressesFree"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := append([]lbv1.IPPool{tc.pool}, tc.others...)
			st := local.IPPoolStatus(&tc.pool, all, model.OfClass(localClass, tc.svcs, append(recordsOf(tc.svcs), tc.recs...)))
			if st.Total != tc.total || st.Assigned != tc.assigned || st.Free != tc.total-tc.assigned {
				t.Errorf("total/assigned/free = %d/%d/%d, want %d/%d/%d", st.Total, st.Assigned, st.Free, tc.total, tc.assigned, tc.total-tc.assigned)
			}
			for typ, want := range map[string]string{local.IPPoolValid: tc.valid, local.IPPoolExhausted: tc.exhausted} {
				c := meta.FindStatusCondition(st.Conditions, typ)
				switch {
				case want == "" && c != nil:
					t.Errorf("condition %s = %+v, want none", typ, c)
				case want != "" && (c == nil || c.Reason != want):
					t.Errorf("condition %s = %+v, want reason %s", typ, c, want)
				}
			}
			if c := meta.FindStatusCondition(st.Conditions, local.IPPoolValid); tc.validMsg != "" && (c == nil || !strings.Contains(c.Message, tc.validMsg)) {
				t.Errorf("Valid condition %+v does not say %q", c, tc.validMsg)
			}
			if c := meta.FindStatusCondition(st.Conditions, local.IPPoolValid); tc.valid == "Overlap" && c != nil && c.Message == "" {
				t.Error("overlap condition has no message naming the other pool")
			}
		})
	}
}

// TestIPPoolReconciler runs the reconciler against the real apiserver.
func TestIPPoolReconciler(t *testing.T) {
	ns := namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&local.IPPoolReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	a := ippool("ipr-a-"+suffix, "203.0.113.0/30")
	b := ippool("ipr-b-"+suffix, "203.0.113.2-203.0.113.9")
	for _, p := range []*lbv1.IPPool{&a, &b} {
		p.Generation = 0
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	}
	svc := localService("holder", localClass)
	svc.Namespace = ns
	svc.Spec.Ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	svc.Spec.AllocateLoadBalancerNodePorts = new(bool)
	if err := env.Client.Create(ctx, &svc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), &svc) })
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}}
	if err := env.Client.Status().Update(ctx, &svc); err != nil {
		t.Fatal(err)
	}
	// The operator records the class before it assigns the address.
	rec := record(svc.Name, localClass)
	rec.Namespace = ns
	if err := env.Client.Create(ctx, &rec); err != nil {
		t.Fatal(err)
	}

	check := func(name string, total, assigned int64, valid string) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			var p lbv1.IPPool
			if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
				return err
			}
			c := meta.FindStatusCondition(p.Status.Conditions, local.IPPoolValid)
			if p.Status.Total != total || p.Status.Assigned != assigned || c == nil || c.Reason != valid {
				return fmt.Errorf("%s status %+v", name, p.Status)
			}
			return nil
		})
	}
	check(a.Name, 4, 1, "Overlap")
	check(b.Name, 8, 0, "Overlap")

	// Removing the overlap clears both conditions.
	if err := env.Client.Get(ctx, client.ObjectKey{Name: b.Name}, &b); err != nil {
		t.Fatal(err)
	}
	b.Spec.Addresses = []string{"203.0.113.8-203.0.113.9"}
	if err := env.Client.Update(ctx, &b); err != nil {
		t.Fatal(err)
	}
	check(a.Name, 4, 1, "Valid")
	// The pool's usage is exported for alerts.
	for state, want := range map[string]float64{"total": 4, "assigned": 1, "free": 3} {
		if got := testutil.ToFloat64(local.PoolAddresses.WithLabelValues(a.Name, state)); got != want {
			t.Errorf("portico_ippool_addresses{ippool=%s,state=%s} = %v, want %v", a.Name, state, got, want)
		}
	}
	check(b.Name, 2, 0, "Valid")
}

// TestIPPoolSpecialAddresses: the apiserver refuses IPPools whose entries
// include addresses no node may announce (CEL on the CRD), and what CEL
// cannot see (a range spanning such a block between two good ends) makes the
// Valid condition False with the block named. Before, all of them were
// accepted and the pool reported Valid.
func TestIPPoolSpecialAddresses(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&local.IPPoolReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	for i, entry := range []string{"0.0.0.0/0", "::/0", "0.0.0.0", "::", "127.0.0.1", "126.0.0.0/7", "::1", "169.254.169.254",
		"169.254.0.1-169.254.0.9", "fe80::/64", "fe80::1-fe80::9", "224.0.0.0/4", "ff02::1", "255.255.255.255", "255.255.255.0/24"} {
		p := ippool(fmt.Sprintf("special-%d-%s", i, suffix), "198.51.100.0/30", entry)
		p.Generation = 0
		err := env.Client.Create(ctx, &p)
		if err == nil {
			_ = env.Client.Delete(context.Background(), &p)
			t.Errorf("IPPool with %q was accepted", entry)
			continue
		}
		if !strings.Contains(err.Error(), "must not include") {
			t.Errorf("IPPool with %q: %v, want the special-address message", entry, err)
		}
	}
	for i, entry := range []string{"198.51.100.8/29", "2001:db8::/120", "192.0.2.250-192.0.3.5", "128.0.0.0/3"} {
		p := ippool(fmt.Sprintf("plain-%d-%s", i, suffix), entry)
		p.Generation = 0
		if err := env.Client.Create(ctx, &p); err != nil {
			t.Errorf("IPPool with %q: %v", entry, err)
			continue
		}
		_ = env.Client.Delete(context.Background(), &p)
	}

	span := ippool("span-"+suffix, "126.0.0.1-128.0.0.1")
	span.Generation = 0
	if err := env.Client.Create(ctx, &span); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), &span) })
	eventually(t, 20*time.Second, func() error {
		var p lbv1.IPPool
		if err := env.Client.Get(ctx, client.ObjectKey{Name: span.Name}, &p); err != nil {
			return err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, local.IPPoolValid)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "InvalidAddresses" || !strings.Contains(c.Message, "127.0.0.0/8 (loopback)") {
			return fmt.Errorf("Valid condition %+v", c)
		}
		return nil
	})
}
