package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// kubeSvc builds a corev1.Service fixture: LoadBalancer, one TCP port
// "http" 80 -> NodePort 30080, ingress 203.0.113.10.
func kubeSvc(mods ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}},
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.10"}}}},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

type epSpec struct {
	addr        string
	node        string
	ready       *bool
	terminating bool
}

// slice builds an EndpointSlice of service name with one port.
func slice(svcName, portName string, proto corev1.Protocol, port int32, eps ...epSpec) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: svcName + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svcName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Protocol: &proto, Port: &port}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.node != "" {
			ep.NodeName = &e.node
		}
		if e.terminating {
			ep.Conditions.Terminating = &e.terminating
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	if len(eps) > 0 && strings.Contains(eps[0].addr, ":") {
		s.AddressType = discoveryv1.AddressTypeIPv6
	}
	return s
}

func boolPtr(b bool) *bool { return &b }

func TestFromKubernetes(t *testing.T) {
	ep := func(addr string, port uint16, node string, ready bool) Endpoint {
		return Endpoint{Addr: netip.MustParseAddr(addr), Port: port, NodeName: node, Ready: ready}
	}
	vip := []netip.Addr{netip.MustParseAddr("203.0.113.10")}
	tests := []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   Service
	}{{
		name:   "ports matched by name, readiness and node carried",
		svc:    kubeSvc(),
		slices: []*discoveryv1.EndpointSlice{slice("web", "http", corev1.ProtocolTCP, 8080, epSpec{addr: "10.0.0.1", node: "n1"}, epSpec{addr: "10.0.0.2", node: "n2", ready: boolPtr(false)})},
		want: Service{Key: ServiceKey{"shop", "web"}, LoadBalancerIPs: vip, TrafficPolicy: Cluster, Ports: []Port{{
			Name: "http", Protocol: TCP, Port: 80, NodePort: 30080,
			Endpoints: []Endpoint{ep("10.0.0.1", 8080, "n1", true), ep("10.0.0.2", 8080, "n2", false)},
		}}},
	}, {
		name: "terminating is not ready; other services' slices and other port names ignored",
		svc:  kubeSvc(),
		slices: []*discoveryv1.EndpointSlice{
			slice("web", "http", corev1.ProtocolTCP, 8080, epSpec{addr: "10.0.0.1", ready: boolPtr(true), terminating: true}),
			slice("other", "http", corev1.ProtocolTCP, 9090, epSpec{addr: "10.0.0.9"}),
			slice("web", "metrics", corev1.ProtocolTCP, 9100, epSpec{addr: "10.0.0.3"}),
			slice("web", "http", corev1.ProtocolUDP, 8080, epSpec{addr: "10.0.0.4"}),
		},
		want: Service{Key: ServiceKey{"shop", "web"}, LoadBalancerIPs: vip, TrafficPolicy: Cluster, Ports: []Port{{
			Name: "http", Protocol: TCP, Port: 80, NodePort: 30080, Endpoints: []Endpoint{ep("10.0.0.1", 8080, "", false)},
		}}},
	}, {
		name: "local policy, affinity default timeout, health check port",
		svc: kubeSvc(func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 32000
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}),
		want: Service{Key: ServiceKey{"shop", "web"}, LoadBalancerIPs: vip, TrafficPolicy: Local, AffinityTimeout: 3 * time.Hour,
			HealthCheckNodePort: 32000, Ports: []Port{{Name: "http", Protocol: TCP, Port: 80, NodePort: 30080}}},
	}, {
		name: "affinity timeout, source ranges, dual-stack ingress, hostname-only ingress skipped",
		svc: kubeSvc(func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			to := int32(60)
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &to}}
			s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.7/24", " 2001:db8::/32 "}
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "2001:db8::10"}, corev1.LoadBalancerIngress{Hostname: "lb.example"})
		}),
		want: Service{Key: ServiceKey{"shop", "web"}, LoadBalancerIPs: append(vip, netip.MustParseAddr("2001:db8::10")), TrafficPolicy: Cluster,
			AffinityTimeout: time.Minute,
			SourceRanges:    []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
			Ports:           []Port{{Name: "http", Protocol: TCP, Port: 80, NodePort: 30080}}},
	}, {
		name: "legacy source-range annotation, UDP and SCTP ports, IPv6 slice, duplicate endpoints once",
		svc: kubeSvc(func(s *corev1.Service) {
			s.Annotations = map[string]string{"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, 192.0.2.1/32"}
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}, {Name: "sig", Protocol: corev1.ProtocolSCTP, Port: 3868}}
		}),
		slices: []*discoveryv1.EndpointSlice{
			slice("web", "dns", corev1.ProtocolUDP, 5353, epSpec{addr: "fd00::1", node: "n1"}, epSpec{addr: "fd00::1", node: "n1"}),
			slice("web", "sig", corev1.ProtocolSCTP, 3868, epSpec{addr: "10.0.0.5"}),
		},
		want: Service{Key: ServiceKey{"shop", "web"}, LoadBalancerIPs: vip, TrafficPolicy: Cluster,
			SourceRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")},
			Ports: []Port{
				{Name: "dns", Protocol: UDP, Port: 53, Endpoints: []Endpoint{ep("fd00::1", 5353, "n1", true)}},
				{Name: "sig", Protocol: SCTP, Port: 3868, Endpoints: []Endpoint{ep("10.0.0.5", 3868, "", true)}},
			}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromKubernetes(tt.svc, tt.slices)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("FromKubernetes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromKubernetesInvalidSourceRange(t *testing.T) {
	for _, bad := range []string{"10.0.0.0", "10.0.0.0/33", "banana"} {
		_, err := FromKubernetes(kubeSvc(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24", bad} }), nil)
		var ce *providers.ConfigError
		if !errors.As(err, &ce) || ce.Reason != "InvalidSourceRange" {
			t.Errorf("source range %q: err = %v, want ConfigError InvalidSourceRange", bad, err)
		}
	}
}

func TestLocalReadyEndpoints(t *testing.T) {
	s := svc("web", withPorts(Port{Protocol: TCP, Port: 80}, Port{Protocol: UDP, Port: 53}),
		withEndpoints("10.0.0.1:80@node-a", "10.0.0.2:80@node-a!", "10.0.0.3:80@node-b"))
	if got := s.LocalReadyEndpoints("node-a"); got != 1 {
		t.Errorf("LocalReadyEndpoints(node-a) = %d, want 1 (one ready address, counted once across ports)", got)
	}
	if got := s.LocalReadyEndpoints("node-c"); got != 0 {
		t.Errorf("LocalReadyEndpoints(node-c) = %d, want 0", got)
	}
}

// FuzzSourceRanges feeds arbitrary annotation text: the parser must not
// panic, and what it accepts must be canonical prefixes that the rule
// generator turns into a transaction knftables' fake accepts.
func FuzzSourceRanges(f *testing.F) {
	for _, seed := range []string{"10.0.0.0/8", "10.0.0.0/8, 2001:db8::/32", "::ffff:10.0.0.0/104", "", ",,", "1.2.3.4/33", "a/b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, annotation string) {
		s := kubeSvc(func(s *corev1.Service) {
			s.Annotations = map[string]string{model.AnnotationSourceRanges: annotation}
		})
		got, err := FromKubernetes(s, nil)
		if err != nil {
			var ce *providers.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a ConfigError: %v", err)
			}
			return
		}
		for _, p := range got.SourceRanges {
			if p != p.Masked() || p.Addr().Is4In6() {
				t.Fatalf("range %s is not canonical", p)
			}
		}
		dp, _ := newFake(t, Options{})
		if err := dp.Sync(context.Background(), []Service{got}); err != nil {
			t.Fatalf("programming %v: %v", got, err)
		}
	})
}

// FuzzFromKubernetes feeds arbitrary endpoint addresses, ports and ingress
// addresses through the adapter and the rule generator.
func FuzzFromKubernetes(f *testing.F) {
	f.Add("10.0.0.1", "203.0.113.1", int32(8080), int32(80), "node-a", true)
	f.Add("fd00::1", "2001:db8::1", int32(1), int32(65535), "", false)
	f.Add("::ffff:10.0.0.1", "bogus", int32(-1), int32(70000), "x", true)
	f.Fuzz(func(t *testing.T, epAddr, ingress string, epPort, svcPort int32, node string, ready bool) {
		s := kubeSvc(func(s *corev1.Service) {
			s.Spec.Ports[0].Port = svcPort
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ingress}}
		})
		sl := slice("web", "http", corev1.ProtocolTCP, epPort, epSpec{addr: epAddr, node: node, ready: &ready})
		got, err := FromKubernetes(s, []*discoveryv1.EndpointSlice{sl})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range got.Ports {
			for _, ep := range p.Endpoints {
				if !ep.Addr.IsValid() || ep.Addr.Is4In6() || ep.Port == 0 {
					t.Fatalf("bad endpoint %+v", ep)
				}
			}
		}
		dp, _ := newFake(t, Options{NodeName: node})
		if err := dp.Sync(context.Background(), []Service{got}); err != nil {
			t.Fatalf("programming %v: %v", got, err)
		}
	})
}
