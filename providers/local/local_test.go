package local_test

import (
	"errors"
	"fmt"
	"github.com/portico-lb/portico/usage/meters"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/local"
	"github.com/portico-lb/portico/providers/providertest"
)

func scheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func pool(name string, addrs ...string) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Addresses: addrs}}
}

// faults is the harness's fault injector behind Options.Intercept.
type faults struct {
	mu         sync.Mutex
	mutating   int
	transient  int
	crashAfter int // -1: off
	crashed    bool
}

func (f *faults) intercept(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.crashed:
		return errors.New("injected crash")
	case local.IsMutating(op) && f.crashAfter == 0:
		f.crashed = true
		return errors.New("injected crash")
	case f.transient > 0:
		f.transient--
		return providers.Retry(errors.New("injected apiserver throttling"), 0)
	}
	if local.IsMutating(op) {
		f.mutating++
		if f.crashAfter > 0 {
			f.crashAfter--
		}
	}
	return nil
}

func newProvider(t testing.TB, f *faults, objs ...client.Object) *local.Provider {
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(objs...).Build()
	opts := local.Options{ClusterID: "conformance", Client: c}
	if f != nil {
		opts.Intercept = f.intercept
	}
	p, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) *providertest.Harness {
		f := &faults{crashAfter: -1}
		p := newProvider(t, f, pool("default", "192.0.2.0/24", "2001:db8::/120"))
		return &providertest.Harness{
			Provider:  p,
			ClusterID: "conformance",
			Resources: func() []providertest.Resource {
				var out []providertest.Resource
				for _, a := range p.Allocations() {
					for _, ip := range a.Addresses {
						out = append(out, providertest.Resource{Kind: "address", ID: a.Key.String() + "=" + ip.String(), Tags: providers.OwnershipTags(a.Key)})
					}
				}
				return out
			},
			MutatingCalls:   func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.mutating },
			InjectTransient: func(n int) { f.mu.Lock(); f.transient = n; f.mu.Unlock() },
			CrashAfter:      func(n int) { f.mu.Lock(); f.crashAfter, f.crashed = n, false; f.mu.Unlock() },
			Recover:         func() { f.mu.Lock(); f.crashAfter, f.crashed, f.transient = -1, false, 0; f.mu.Unlock() },
		}
	})
}

func key(name string) providers.Key {
	return providers.Key{ClusterID: "conformance", Namespace: "ns", Name: name, UID: "uid-" + name}
}

func desired(name string, ports ...providers.Port) *providers.LoadBalancer {
	if len(ports) == 0 {
		ports = []providers.Port{providertest.TCP(80, 30080)}
	}
	return providertest.DefaultDesired(key(name), []string{"node-a"}, ports)
}

func ips(st *providers.Status) []netip.Addr {
	var out []netip.Addr
	for _, in := range st.Ingress {
		out = append(out, in.IP)
	}
	return out
}

func configReason(err error) string {
	var ce *providers.ConfigError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

func TestNeverTwoServicesOnOneAddress(t *testing.T) {
	p := newProvider(t, nil, pool("small", "192.0.2.10-192.0.2.13"))
	seen := map[netip.Addr]string{}
	for i := range 4 {
		name := fmt.Sprintf("svc-%d", i)
		st, err := p.Ensure(t.Context(), desired(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ip := st.Ingress[0].IP
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s both got %s", other, name, ip)
		}
		seen[ip] = name
	}
	_, err := p.Ensure(t.Context(), desired("svc-4"))
	if configReason(err) != "PoolExhausted" {
		t.Fatalf("5th Service: got %v, want PoolExhausted", err)
	}
	var ce *providers.ConfigError
	if errors.As(err, &ce) && !contains(ce.Message, "small") {
		t.Errorf("exhaustion message %q does not name the pool", ce.Message)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestSharing(t *testing.T) {
	tests := []struct {
		name       string
		keyA, keyB string
		portB      int32
		wantShared bool
	}{
		{"same key distinct ports", "k", "k", 443, true},
		{"same key colliding ports", "k", "k", 80, false},
		{"different keys", "k", "other", 443, false},
		{"no key", "", "", 443, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, nil, pool("p", "192.0.2.0/29"))
			a := desired("a", providertest.TCP(80, 30080))
			a.SharingKey = tc.keyA
			b := desired("b", providertest.TCP(tc.portB, 30443))
			b.SharingKey = tc.keyB
			sa, err := p.Ensure(t.Context(), a)
			if err != nil {
				t.Fatal(err)
			}
			sb, err := p.Ensure(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			if shared := sa.Ingress[0].IP == sb.Ingress[0].IP; shared != tc.wantShared {
				t.Fatalf("a=%s b=%s shared=%v, want %v", sa.Ingress[0].IP, sb.Ingress[0].IP, shared, tc.wantShared)
			}
			// Requesting a's address explicitly obeys the same rule.
			cPort := tc.portB
			if tc.wantShared {
				cPort = 8443 // distinct from both a and b
			}
			c := desired("c", providertest.TCP(cPort, 31443))
			c.SharingKey = tc.keyB
			c.RequestedIPs = []netip.Addr{sa.Ingress[0].IP}
			_, err = p.Ensure(t.Context(), c)
			if tc.wantShared && err != nil {
				t.Fatalf("requesting the shared address: %v", err)
			}
			if !tc.wantShared && configReason(err) != "AddressInUse" {
				t.Fatalf("requesting a's address: got %v, want AddressInUse", err)
			}
		})
	}
}

func TestRequestedAddress(t *testing.T) {
	p := newProvider(t, nil, pool("p", "192.0.2.0/28"), pool("other", "198.51.100.0/28"))
	d := desired("req")
	d.RequestedIPs = []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	st, err := p.Ensure(t.Context(), d)
	if err != nil || st.Ingress[0].IP != d.RequestedIPs[0] {
		t.Fatalf("requested 192.0.2.9: got %v, %v", st, err)
	}
	out := desired("outside")
	out.RequestedIPs = []netip.Addr{netip.MustParseAddr("203.0.113.1")}
	if _, err := p.Ensure(t.Context(), out); configReason(err) != "AddressNotInPool" {
		t.Fatalf("address outside every pool: got %v, want AddressNotInPool", err)
	}
	v6 := desired("fam")
	v6.RequestedIPs = []netip.Addr{netip.MustParseAddr("2001:db8::1")}
	if _, err := p.Ensure(t.Context(), v6); configReason(err) != "RequestedIPFamilyMismatch" {
		t.Fatalf("IPv6 request on an IPv4 Service: got %v", err)
	}
}

func TestDualStack(t *testing.T) {
	p := newProvider(t, nil, pool("v4", "192.0.2.0/28"), pool("v6", "2001:db8::/124"))
	tests := []struct {
		name     string
		families []string
		dual     bool
		want     []string
	}{
		{"single v4", []string{"IPv4"}, false, []string{"192.0.2.0"}},
		{"single v6", []string{"IPv6"}, false, []string{"2001:db8::"}},
		{"dual v6 primary", []string{"IPv6", "IPv4"}, true, []string{"2001:db8::1", "192.0.2.1"}},
		{"prefer dual but single listed", []string{"IPv4", "IPv6"}, false, []string{"192.0.2.2"}},
	}
	for i, tc := range tests {
		d := desired(fmt.Sprintf("ds-%d", i))
		d.IPFamilies, d.DualStack = tc.families, tc.dual
		st, err := p.Ensure(t.Context(), d)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := fmt.Sprint(ips(st)); got != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %s, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSelectorsAndAutoAssign(t *testing.T) {
	off := false
	manual := pool("a-manual", "192.0.2.0/30")
	manual.Spec.AutoAssign = &off
	team := pool("b-team", "198.51.100.0/30")
	team.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "red"}}
	prod := pool("c-prod", "203.0.113.0/30")
	prod.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	p := newProvider(t, nil, manual, team, prod)

	red := desired("red")
	red.Labels = map[string]string{"team": "red"}
	if st, err := p.Ensure(t.Context(), red); err != nil || st.Ingress[0].IP.String() != "198.51.100.0" {
		t.Fatalf("team=red Service: %v %v, want 198.51.100.0", st, err)
	}
	inProd := desired("in-prod")
	inProd.NamespaceLabels = map[string]string{"env": "prod"}
	if st, err := p.Ensure(t.Context(), inProd); err != nil || st.Ingress[0].IP.String() != "203.0.113.0" {
		t.Fatalf("Service in prod namespace: %v %v, want 203.0.113.0", st, err)
	}
	if _, err := p.Ensure(t.Context(), desired("nobody")); configReason(err) != "NoPool" {
		t.Fatalf("Service no auto pool selects: got %v, want NoPool", err)
	}
	pinned := desired("pinned")
	pinned.RequestedIPs = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	if _, err := p.Ensure(t.Context(), pinned); err != nil {
		t.Fatalf("requesting from an autoAssign=false pool: %v", err)
	}
}

func TestAvoidBuggyIPs(t *testing.T) {
	pl := pool("p", "192.0.2.254-192.0.3.1")
	pl.Spec.AvoidBuggyIPs = true
	p := newProvider(t, nil, pl)
	var got []string
	for i := range 2 {
		st, err := p.Ensure(t.Context(), desired(fmt.Sprintf("s%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, st.Ingress[0].IP.String())
	}
	if fmt.Sprint(got) != "[192.0.2.254 192.0.3.1]" {
		t.Fatalf("got %v, want [192.0.2.254 192.0.3.1] (skipping .255 and .0)", got)
	}
	if _, err := p.Ensure(t.Context(), desired("s2")); configReason(err) != "PoolExhausted" {
		t.Fatalf("third: %v", err)
	}
}

func TestReleaseNotifiesAndFreesAddress(t *testing.T) {
	var released atomic.Int32
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(pool("one", "192.0.2.7")).Build()
	p, err := local.New(local.Options{Client: c, OnRelease: func() { released.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Ensure(t.Context(), desired("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Ensure(t.Context(), desired("pending")); configReason(err) != "PoolExhausted" {
		t.Fatalf("pending: %v", err)
	}
	if err := p.Delete(t.Context(), key("first")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if released.Load() != 1 {
		t.Fatalf("OnRelease called %d times, want 1", released.Load())
	}
	if st, err := p.Ensure(t.Context(), desired("pending")); err != nil || st.Ingress[0].IP.String() != "192.0.2.7" {
		t.Fatalf("pending after release: %v %v", st, err)
	}
}

// TestRestartKeepsAddresses builds a new provider over a cluster whose
// Services already show addresses, as after an operator restart: nobody may
// move, and new Services must not get the taken addresses.
func TestRestartKeepsAddresses(t *testing.T) {
	class := providers.Class(local.Name)
	svc := func(name, ip, sharing string, port int32) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
				Ports: []corev1.ServicePort{{Name: fmt.Sprintf("tcp-%d", port), Protocol: corev1.ProtocolTCP, Port: port}}},
		}
		if sharing != "" {
			s.Annotations = map[string]string{model.AnnotationAllowSharedIP: sharing}
		}
		if ip != "" {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		}
		return s
	}
	// rec is the operator's record: which class built the Service's load
	// balancer, and the addresses it last reported.
	rec := func(s *corev1.Service, class string, ips ...string) *v1alpha1.LoadBalancer {
		r := &v1alpha1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name},
			Spec: v1alpha1.LoadBalancerSpec{Class: class}, Status: v1alpha1.LoadBalancerStatus{Class: class}}
		for _, ip := range ips {
			r.Status.Addresses = append(r.Status.Addresses, v1alpha1.LoadBalancerAddress{IP: ip})
		}
		return r
	}
	keeps, fromLB, shares := svc("keeps", "192.0.2.3", "", 80), svc("from-lb", "", "", 80), svc("shares", "192.0.2.5", "k", 80)
	foreign := svc("aws-svc", "192.0.2.0", "", 80)
	foreign.Spec.LoadBalancerClass = ptr.To(providers.Class("aws"))
	// Served through --default-class: no class in the spec, the record
	// says local. Its address must survive a restart too.
	byDefault := svc("bydefault", "192.0.2.6", "", 80)
	byDefault.Spec.LoadBalancerClass = nil

	p := newProvider(t, nil, pool("p", "192.0.2.0/29"),
		keeps, rec(keeps, class), fromLB, rec(fromLB, class, "192.0.2.1"), foreign, rec(foreign, providers.Class("aws")),
		shares, rec(shares, class), byDefault, rec(byDefault, class))
	for name, want := range map[string]string{"keeps": "192.0.2.3", "from-lb": "192.0.2.1", "bydefault": "192.0.2.6"} {
		st, err := p.Ensure(t.Context(), desired(name))
		if err != nil || st.Ingress[0].IP.String() != want {
			t.Fatalf("%s after restart: %v %v, want %s", name, st, err, want)
		}
	}
	// A Service that asks for the default-class Service's address does not
	// get it.
	thief := desired("thief")
	thief.RequestedIPs = []netip.Addr{netip.MustParseAddr("192.0.2.6")}
	if st, err := p.Ensure(t.Context(), thief); err == nil {
		t.Fatalf("a second Service was given the default-class Service's address: %v", st)
	}
	// The aws Service's address is not ours; the lowest free one is .0.
	st, err := p.Ensure(t.Context(), desired("new"))
	if err != nil || st.Ingress[0].IP.String() != "192.0.2.0" {
		t.Fatalf("new Service: %v %v, want 192.0.2.0", st, err)
	}
	// A new Service with the same sharing key joins the rebuilt address.
	j := desired("joins", providertest.TCP(443, 30443))
	j.SharingKey = "k"
	if st, err := p.Ensure(t.Context(), j); err != nil || st.Ingress[0].IP.String() != "192.0.2.5" {
		t.Fatalf("sharing after restart: %v %v, want 192.0.2.5", st, err)
	}
}

func TestListFailureIsRetryable(t *testing.T) {
	f := &faults{crashAfter: -1, transient: 1}
	p := newProvider(t, f, pool("p", "192.0.2.0/29"))
	_, err := p.Ensure(t.Context(), desired("x"))
	if _, ok := providers.IsRetryable(err); !ok {
		t.Fatalf("got %v, want a RetryError", err)
	}
	if _, err := p.Ensure(t.Context(), desired("x")); err != nil {
		t.Fatal(err)
	}
}

// The usage meter of local addresses (usage/meters.LocalBytes) is asked
// about the Service's addresses: they name the forwarders' byte counters.
func TestCostMetersTheAddresses(t *testing.T) {
	p := newProvider(t, nil, pool("small", "192.0.2.10-192.0.2.13"))
	st, err := p.Ensure(t.Context(), desired("web"))
	if err != nil {
		t.Fatal(err)
	}
	if want := st.Ingress[0].IP.String(); st.Cost.MeterID != want {
		t.Errorf("MeterID = %q, want the address %s", st.Cost.MeterID, want)
	}
	if _, err := meters.ParseLocalMeterID(st.Cost.MeterID); err != nil {
		t.Error(err)
	}
}
