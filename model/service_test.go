package model_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

func TestClasses(t *testing.T) {
	local, aws := model.LocalClass, providers.Class("aws")
	withClass := gen.Service("ns", "a", gen.WithClass(aws))
	noClass := gen.Service("ns", "b")
	noClass.Spec.LoadBalancerClass = nil
	clusterIP := gen.Service("ns", "c", gen.WithClass(local))
	clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	foreign := gen.Service("ns", "d", gen.WithClass("example.com/other"))

	tests := []struct {
		name    string
		classes model.Classes
		svc     *corev1.Service
		want    string
	}{
		{"explicit enabled class", model.Classes{Enabled: []string{aws, local}}, withClass, aws},
		{"explicit class not enabled", model.Classes{Enabled: []string{local}, Default: local}, withClass, ""},
		{"no class, default set", model.Classes{Enabled: []string{local}, Default: local}, noClass, local},
		{"no class, no default", model.Classes{Enabled: []string{local}}, noClass, ""},
		{"default not enabled", model.Classes{Enabled: []string{aws}, Default: local}, noClass, ""},
		{"not a LoadBalancer", model.Classes{Enabled: []string{local}, Default: local}, clusterIP, ""},
		{"another controller's class", model.Classes{Enabled: []string{local}, Default: local}, foreign, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.classes.For(tc.svc); got != tc.want {
				t.Errorf("For = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRecorded(t *testing.T) {
	svc := gen.Service("ns", "web")
	svc.Spec.LoadBalancerClass = nil // served through the default class
	svc.UID = "uid-1"
	rec := func(mut func(*lbv1.LoadBalancer)) *lbv1.LoadBalancer {
		r := &lbv1.LoadBalancer{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "web", UID: "uid-1", Controller: ptr.To(true)}}},
			Spec: lbv1.LoadBalancerSpec{Class: model.LocalClass}}
		if mut != nil {
			mut(r)
		}
		return r
	}
	notLB := svc.DeepCopy()
	notLB.Spec.Type = corev1.ServiceTypeNodePort
	tests := []struct {
		name string
		svc  *corev1.Service
		rec  *lbv1.LoadBalancer
		want string
	}{
		{"default-class Service with its record", svc, rec(nil), model.LocalClass},
		{"no record yet", svc, nil, ""},
		{"record of an earlier Service of that name", svc, rec(func(r *lbv1.LoadBalancer) { r.OwnerReferences[0].UID = "uid-0" }), ""},
		{"record of another Service", svc, rec(func(r *lbv1.LoadBalancer) { r.Name = "other" }), ""},
		{"type changed away from LoadBalancer", notLB, rec(nil), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := model.Recorded(tc.svc, tc.rec); got != tc.want {
				t.Errorf("Recorded = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		svc     *corev1.Service
		check   func(t *testing.T, v *model.Service)
		wantErr string // reason: message substring
	}{
		{name: "defaults", svc: gen.Service("ns", "a"), check: func(t *testing.T, v *model.Service) {
			if v.Scheme != providers.SchemeExternal || v.TrafficPolicy != providers.TrafficPolicyCluster || v.SharingKey != "" ||
				len(v.SourceRanges) != 0 || v.SessionAffinityTimeout != 0 || v.TargetPods {
				t.Errorf("unexpected defaults: %+v", v)
			}
			if len(v.Ports) != 1 || v.Ports[0].Protocol != providers.TCP {
				t.Errorf("ports %+v", v.Ports)
			}
		}},
		{name: "spec source ranges win over the annotation", svc: gen.Service("ns", "a", gen.WithSourceRanges(" 10.0.0.0/8 "),
			gen.WithAnnotation(model.AnnotationSourceRanges, "192.0.2.0/24")), check: ranges("10.0.0.0/8")},
		{name: "legacy annotation when spec is empty", svc: gen.Service("ns", "a",
			gen.WithAnnotation(model.AnnotationSourceRanges, " 192.0.2.7/24, ,::ffff:198.51.100.0/120 ")), check: ranges("192.0.2.0/24", "198.51.100.0/24")},
		{name: "bad legacy annotation", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationSourceRanges, "10.0.0.0/8,office")),
			wantErr: model.ReasonInvalidSourceRange + ": " + model.AnnotationSourceRanges},
		{name: "bad spec range", svc: gen.Service("ns", "a", gen.WithSourceRanges("10.0.0.300/8")),
			wantErr: model.ReasonInvalidSourceRange + ": spec.loadBalancerSourceRanges"},
		{name: "Local policy keeps the health check port", svc: gen.Service("ns", "a", gen.WithLocalTraffic(32001)), check: func(t *testing.T, v *model.Service) {
			if v.TrafficPolicy != providers.TrafficPolicyLocal || v.HealthCheckNodePort != 32001 {
				t.Errorf("policy %s hc %d", v.TrafficPolicy, v.HealthCheckNodePort)
			}
		}},
		{name: "ClientIP affinity with timeout", svc: gen.Service("ns", "a", gen.WithClientIPAffinity(60)), check: func(t *testing.T, v *model.Service) {
			if v.SessionAffinityTimeout != time.Minute {
				t.Errorf("timeout %v", v.SessionAffinityTimeout)
			}
		}},
		{name: "ClientIP affinity default timeout", svc: gen.Service("ns", "a", gen.WithClientIPAffinity(0)), check: func(t *testing.T, v *model.Service) {
			if v.SessionAffinityTimeout != model.DefaultAffinityTimeout {
				t.Errorf("timeout %v", v.SessionAffinityTimeout)
			}
		}},
		{name: "internal scheme, requested dual-stack IPs, sharing key", svc: gen.Service("ns", "a", gen.WithDualStack(),
			gen.WithAnnotation(model.AnnotationScheme, "internal"), gen.WithAnnotation(model.AnnotationIP, "192.0.2.10, 2001:db8::10"),
			gen.WithAnnotation(model.AnnotationAllowSharedIP, " team-a ")), check: func(t *testing.T, v *model.Service) {
			if v.Scheme != providers.SchemeInternal || fmt.Sprint(v.RequestedIPs) != "[192.0.2.10 2001:db8::10]" || v.SharingKey != "team-a" || !v.DualStack {
				t.Errorf("got %+v", v)
			}
		}},
		{name: "spec.loadBalancerIP honoured", svc: withLBIP(gen.Service("ns", "a"), "192.0.2.7"), check: func(t *testing.T, v *model.Service) {
			if fmt.Sprint(v.RequestedIPs) != "[192.0.2.7]" {
				t.Errorf("requested %v", v.RequestedIPs)
			}
		}},
		{name: "annotation wins over spec.loadBalancerIP", svc: withLBIP(gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, "192.0.2.8")), "192.0.2.7"),
			check: func(t *testing.T, v *model.Service) {
				if fmt.Sprint(v.RequestedIPs) != "[192.0.2.8]" {
					t.Errorf("requested %v", v.RequestedIPs)
				}
			}},
		{name: "bad spec.loadBalancerIP", svc: withLBIP(gen.Service("ns", "a"), "nope"), wantErr: model.ReasonInvalidAnnotation + ": spec.loadBalancerIP"},
		{name: "bad scheme", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationScheme, "private")),
			wantErr: model.ReasonInvalidAnnotation + `: lb.portico.dev/scheme: want "external" or "internal" (got "private")`},
		{name: "two IPv4", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, "192.0.2.1,192.0.2.2")), wantErr: "two IPv4"},
		{name: "three addresses", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, "192.0.2.1,2001:db8::1,192.0.2.3")), wantErr: "at most two"},
		{name: "loopback", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, "127.0.0.1")), wantErr: "cannot be a load-balancer address"},
		{name: "link-local metadata address", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, "169.254.169.254")), wantErr: "cannot be a load-balancer address"},
		{name: "zone", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, "fe80::1%eth0")), wantErr: "has a zone"},
		{name: "bad sharing key", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationAllowSharedIP, "a b")), wantErr: "allow-shared-ip"},
		{name: "empty sharing key", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationAllowSharedIP, "")), wantErr: "allow-shared-ip"},
		{name: "oversized value keeps the reason", svc: gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationScheme, strings.Repeat("x", 4096))),
			wantErr: `want "external" or "internal"`},
		{name: "no ports", svc: func() *corev1.Service { s := gen.Service("ns", "a"); s.Spec.Ports = nil; return s }(), wantErr: model.ReasonNoPorts},
		{name: "addresses from status, unmapped", svc: func() *corev1.Service {
			s := gen.Service("ns", "a")
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "::ffff:192.0.2.9"}, {Hostname: "lb.example"}, {IP: "2001:db8::9"}}
			return s
		}(), check: func(t *testing.T, v *model.Service) {
			if fmt.Sprint(v.Addresses) != "[192.0.2.9 2001:db8::9]" {
				t.Errorf("addresses %v", v.Addresses)
			}
		}},
		{name: "pod targets", svc: gen.Service("ns", "a", gen.WithoutNodePorts()), check: func(t *testing.T, v *model.Service) {
			if !v.TargetPods {
				t.Error("TargetPods false")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := model.Read(tc.svc, model.LocalClass)
			if tc.wantErr != "" {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("got %v, want a ConfigError", err)
				}
				if got := ce.Reason + ": " + ce.Message; !strings.Contains(got, tc.wantErr) {
					t.Fatalf("%q does not contain %q", got, tc.wantErr)
				}
				if len(ce.Message) > 200 {
					t.Fatalf("message of %d characters: the value is not shortened", len(ce.Message))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Class != model.LocalClass || v.Namespace != "ns" || v.Name != "a" {
				t.Errorf("identity %s %s/%s", v.Class, v.Namespace, v.Name)
			}
			tc.check(t, v)
		})
	}
}

func ranges(want ...string) func(t *testing.T, v *model.Service) {
	return func(t *testing.T, v *model.Service) {
		t.Helper()
		var got []string
		for _, p := range v.SourceRanges {
			got = append(got, p.String())
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("source ranges %v, want %v", got, want)
		}
	}
}

func withLBIP(s *corev1.Service, ip string) *corev1.Service {
	s.Spec.LoadBalancerIP = ip //nolint:staticcheck // the deprecated field is honoured
	return s
}

func FuzzSourceRanges(f *testing.F) {
	f.Add("10.0.0.0/8", "")
	f.Add("", " 192.0.2.1/24, ::ffff:10.0.0.0/104 ,")
	f.Add("fe80::/10%eth0", "x")
	f.Fuzz(func(t *testing.T, spec, ann string) {
		svc := gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationSourceRanges, ann))
		if spec != "" {
			svc.Spec.LoadBalancerSourceRanges = strings.Split(spec, ",")
		}
		got, err := model.SourceRanges(svc)
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != model.ReasonInvalidSourceRange {
				t.Fatalf("error is not an InvalidSourceRange ConfigError: %v", err)
			}
			return
		}
		for _, p := range got {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("not a normalized prefix: %v", p)
			}
		}
	})
}

func FuzzRequestedIPs(f *testing.F) {
	f.Add("192.0.2.1,2001:db8::1", "")
	f.Add("", "::ffff:1.2.3.4")
	f.Add(",", "fe80::1%lo")
	f.Fuzz(func(t *testing.T, ann, lbIP string) {
		svc := withLBIP(gen.Service("ns", "a", gen.WithAnnotation(model.AnnotationIP, ann)), lbIP)
		got, err := model.RequestedIPs(svc)
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != model.ReasonInvalidAnnotation || len(ce.Message) > 300 {
				t.Fatalf("bad error: %v", err)
			}
			return
		}
		if len(got) > 2 || len(got) == 2 && got[0].Is4() == got[1].Is4() {
			t.Fatalf("accepted %v", got)
		}
		for _, a := range got {
			if a.Is4In6() || a.Zone() != "" || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() {
				t.Fatalf("accepted %v", a)
			}
		}
	})
}

func FuzzSharingKey(f *testing.F) {
	f.Add("team-a")
	f.Add(" a.b_c ")
	f.Add("-x")
	f.Fuzz(func(t *testing.T, v string) {
		got, err := model.SharingKey(map[string]string{model.AnnotationAllowSharedIP: v})
		if err != nil {
			return
		}
		if got == "" || len(got) > 63 || strings.TrimSpace(got) != got {
			t.Fatalf("accepted key %q", got)
		}
	})
}
