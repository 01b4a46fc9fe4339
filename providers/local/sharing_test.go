package local_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/local"
	"github.com/portico-lb/portico/providers/providertest"
)

// sharer is a Service with the sharing key "k" in namespace ns.
func sharer(ns, name string, policy providers.TrafficPolicy, selector map[string]string, port int32) *providers.LoadBalancer {
	d := desired(name, providertest.TCP(port, 30000+port))
	d.Key.Namespace = ns
	d.SharingKey = "k"
	d.TrafficPolicy = policy
	d.Selector = selector
	return d
}

var (
	cluster = providers.TrafficPolicyCluster
	localTP = providers.TrafficPolicyLocal
	web     = map[string]string{"app": "web"}
	db      = map[string]string{"app": "db"}
)

// TestSharingNeedsOneAnnouncer: Services share an address only when one node
// can announce it for all of them (same traffic policy, and for Local the
// same pods), and a sharing key joins one namespace unless the IPPool allows
// more. Before this rule every pair below with the same key shared.
func TestSharingNeedsOneAnnouncer(t *testing.T) {
	tests := []struct {
		name   string
		across bool
		a, b   *providers.LoadBalancer
		// want: "shared", "separate" (own address, no error), or the
		// ConfigError reason of auto-assignment.
		want string
		// why is part of every refusal message.
		why string
	}{
		{name: "cluster and cluster", a: sharer("ns", "a", cluster, web, 80), b: sharer("ns", "b", cluster, db, 443), want: "shared"},
		{name: "local with the same selector", a: sharer("ns", "a", localTP, web, 80), b: sharer("ns", "b", localTP, web, 443), want: "shared"},
		{name: "local and cluster", a: sharer("ns", "a", localTP, web, 80), b: sharer("ns", "b", cluster, web, 443),
			want: "SharingConflict", why: "Service ns/a holds it with externalTrafficPolicy Local, this Service has Cluster"},
		{name: "cluster and local", a: sharer("ns", "a", cluster, web, 80), b: sharer("ns", "b", localTP, web, 443),
			want: "SharingConflict", why: "Service ns/a holds it with externalTrafficPolicy Cluster, this Service has Local"},
		{name: "local with different selectors", a: sharer("ns", "a", localTP, web, 80), b: sharer("ns", "b", localTP, db, 443),
			want: "SharingConflict", why: `Service ns/a holds it with selector "app=web", this Service has "app=db"`},
		{name: "local without selectors", a: sharer("ns", "a", localTP, nil, 80), b: sharer("ns", "b", localTP, nil, 443),
			want: "SharingConflict", why: "Service ns/a holds it; Services with externalTrafficPolicy Local share an address only when both have the same non-empty selector"},
		{name: "another namespace", a: sharer("red", "a", cluster, web, 80), b: sharer("blue", "b", cluster, web, 443),
			want: "separate", why: "Service red/a in another namespace holds it, and its IPPool does not set allowSharingAcrossNamespaces"},
		{name: "another namespace, pool allows it", across: true, a: sharer("red", "a", cluster, web, 80), b: sharer("blue", "b", cluster, web, 443), want: "shared"},
		{name: "colliding ports", a: sharer("ns", "a", cluster, web, 80), b: sharer("ns", "b", cluster, web, 80),
			want: "separate", why: "Service ns/a already uses port 80/TCP on it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := pool("p", "192.0.2.0/29")
			pl.Spec.AllowSharingAcrossNamespaces = tc.across
			p := newProvider(t, nil, pl)
			sa, err := p.Ensure(t.Context(), tc.a)
			if err != nil {
				t.Fatal(err)
			}
			addrA := sa.Ingress[0].IP
			sb, err := p.Ensure(t.Context(), tc.b)
			switch tc.want {
			case "shared", "separate":
				if err != nil {
					t.Fatalf("b: %v", err)
				}
				if shared := sb.Ingress[0].IP == addrA; shared != (tc.want == "shared") {
					t.Fatalf("a=%s b=%s, want %s", addrA, sb.Ingress[0].IP, tc.want)
				}
			default:
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != tc.want || !strings.Contains(ce.Message, tc.why) || !strings.Contains(ce.Message, addrA.String()) {
					t.Fatalf("b: got %v, want %s naming %s and saying %q", err, tc.want, addrA, tc.why)
				}
			}
			// Requesting a's address obeys the same rule and says why not.
			c := *tc.b
			c.Key.Name, c.Key.UID = "c", "uid-c"
			c.Ports = []providers.Port{providertest.TCP(8443, 31443)}
			if tc.want == "separate" && strings.Contains(tc.why, "port") {
				c.Ports = tc.b.Ports
			}
			c.RequestedIPs = []netip.Addr{addrA}
			_, err = p.Ensure(t.Context(), &c)
			if tc.want == "shared" {
				if err != nil {
					t.Fatalf("requesting the shared address: %v", err)
				}
				return
			}
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != "AddressInUse" || !strings.Contains(ce.Message, tc.why) {
				t.Fatalf("requesting a's address: got %v, want AddressInUse saying %q", err, tc.why)
			}
		})
	}
}

// TestAddressLeavesEveryPool: when the only IPPool holding a Service's
// address goes away, Ensure fails with AddressNotInPool and Released (the
// Service's status must drop the address so that no node announces it), the
// allocation is gone, and the next Ensure draws from the remaining pools.
// Before, Ensure silently moved the Service to a new address and kept the old
// one in status until then.
func TestAddressLeavesEveryPool(t *testing.T) {
	gone, other := pool("gone", "192.0.2.0/30"), pool("other", "198.51.100.0/30")
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(gone, other).Build()
	released := make(chan struct{}, 4)
	p, err := local.New(local.Options{ClusterID: "conformance", Client: c, OnRelease: func() { released <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	d := desired("svc")
	d.RequestedIPs = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	if _, err := p.Ensure(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(t.Context(), gone); err != nil {
		t.Fatal(err)
	}
	d.RequestedIPs = nil
	_, err = p.Ensure(t.Context(), d)
	var ce *providers.ConfigError
	if !errors.As(err, &ce) || ce.Reason != "AddressNotInPool" || !ce.Released || !strings.Contains(ce.Message, "192.0.2.1") {
		t.Fatalf("after the pool left: got %#v, want a released AddressNotInPool naming 192.0.2.1", err)
	}
	if a := p.Allocations(); len(a) != 0 {
		t.Fatalf("allocation kept: %+v", a)
	}
	<-released
	st, err := p.Ensure(t.Context(), d)
	if err != nil || st.Ingress[0].IP != netip.MustParseAddr("198.51.100.0") {
		t.Fatalf("next Ensure: %v, %v; want 198.51.100.0", st, err)
	}
}

// FuzzConflict: the sharing rule is symmetric, and whenever it allows
// sharing the two Services agree on everything one announcer needs.
func FuzzConflict(f *testing.F) {
	f.Add("k", "k", "ns", "ns", true, false, "app=web", "app=web", int32(80), int32(443), false)
	f.Add("k", "", "a", "b", false, true, "", "x", int32(80), int32(80), true)
	f.Fuzz(func(t *testing.T, keyA, keyB, nsA, nsB string, localA, localB bool, selA, selB string, portA, portB int32, across bool) {
		mk := func(key, ns string, isLocal bool, sel string, port int32) *local.Allocation {
			policy := providers.TrafficPolicyCluster
			if isLocal {
				policy = providers.TrafficPolicyLocal
			}
			var selector map[string]string
			if k, v, ok := strings.Cut(sel, "="); ok {
				selector = map[string]string{k: v}
			}
			return &local.Allocation{Key: providers.Key{Namespace: ns, Name: "n"}, SharingKey: key, TrafficPolicy: policy,
				Backend: local.BackendKey(policy, selector), Ports: []providers.Port{{Protocol: "TCP", Port: port}}}
		}
		a, b := mk(keyA, nsA, localA, selA, portA), mk(keyB, nsB, localB, selB, portB)
		ab, ba := local.Conflict(a, b, across), local.Conflict(b, a, across)
		if (ab == "") != (ba == "") {
			t.Fatalf("not symmetric: %q vs %q", ab, ba)
		}
		if ab != "" {
			return
		}
		if keyA == "" || keyA != keyB || a.TrafficPolicy != b.TrafficPolicy || portA == portB || (nsA != nsB && !across) {
			t.Fatalf("allowed sharing between %+v and %+v", a, b)
		}
		if localA && (a.Backend == "" || a.Backend != b.Backend) {
			t.Fatalf("Local Services with backends %q and %q share", a.Backend, b.Backend)
		}
	})
}
