package controllers_test

import (
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// TestLocalTrafficOnHealthCheckingBackends: a backend whose load balancer
// health-checks healthCheckNodePort (AWS, like the reference controllers)
// gets every eligible node for externalTrafficPolicy Local and lets the check
// find the nodes with a ready endpoint, so a pod move changes no target.
func TestLocalTrafficOnHealthCheckingBackends(t *testing.T) {
	nodes := []corev1.Node{*gen.Node("a", "10.0.0.1"), *gen.Node("b", "10.0.0.2"), *gen.Node("c", "10.0.0.3", gen.NotReady())}
	svc := gen.Service("ns", "web", gen.WithLocalTraffic(32000))
	for _, tc := range []struct {
		name string
		all  bool
		on   string
		want string
	}{
		{"narrowed", false, "b", "[b]"},
		{"every eligible node", true, "b", "[a b]"},
		{"every eligible node after the pod moved", true, "a", "[a b]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := []discoveryv1.EndpointSlice{*gen.EndpointSlice("ns", "web", "http", 8080, gen.Endpoint{IP: "10.1.0.1", Node: tc.on, Ready: true})}
			d, err := controllers.Desired(controllers.DesiredInput{ClusterID: "c", Class: "lb.portico.dev/aws", Service: svc, Nodes: nodes, Slices: eps, AllNodesForLocal: tc.all})
			if err != nil {
				t.Fatal(err)
			}
			if got := nodeNames(d); got != tc.want || d.HealthCheckNodePort != 32000 {
				t.Errorf("nodes %s (hc %d), want %s", got, d.HealthCheckNodePort, tc.want)
			}
		})
	}
}

// TestDesired is the table over the pure desired state: what every backend
// receives for a Service.
func TestDesired(t *testing.T) {
	nodes := []corev1.Node{
		*gen.Node("a", "10.0.0.1"),
		*gen.Node("b", "10.0.0.2"),
		*gen.Node("c", "10.0.0.3", gen.NotReady()),
		*gen.Node("d", "10.0.0.4", gen.WithLabel(model.LabelExcludeFromLB, "")),
	}
	drained := gen.Node("e", "10.0.0.5")
	drained.Spec.Taints = []corev1.Taint{{Key: model.TaintToBeDeleted, Effect: corev1.TaintEffectNoSchedule}}
	nodes = append(nodes, *drained)
	epsOnB := []discoveryv1.EndpointSlice{*gen.EndpointSlice("ns", "web", "http", 8080,
		gen.Endpoint{IP: "10.1.0.1", Node: "b", Ready: true}, gen.Endpoint{IP: "10.1.0.2", Node: "a", Ready: false})}

	tests := []struct {
		name    string
		svc     *corev1.Service
		slices  []discoveryv1.EndpointSlice
		check   func(t *testing.T, d *providers.LoadBalancer)
		wantErr string
	}{
		{name: "eligible nodes only, sorted", svc: gen.Service("ns", "web"), check: func(t *testing.T, d *providers.LoadBalancer) {
			if got := nodeNames(d); got != "[a b]" {
				t.Errorf("nodes %s, want [a b] (c NotReady, d excluded, e drained)", got)
			}
			if d.Ports[0].NodePort != 30080 || d.Ports[0].TargetPort != 8080 || d.TrafficPolicy != providers.TrafficPolicyCluster {
				t.Errorf("port %+v policy %s", d.Ports[0], d.TrafficPolicy)
			}
		}},
		{name: "Local narrows to nodes with a ready endpoint", svc: gen.Service("ns", "web", gen.WithLocalTraffic(32000)), slices: epsOnB,
			check: func(t *testing.T, d *providers.LoadBalancer) {
				if got := nodeNames(d); got != "[b]" || d.HealthCheckNodePort != 32000 {
					t.Errorf("nodes %s hc %d", got, d.HealthCheckNodePort)
				}
			}},
		{name: "legacy source-range annotation reaches every backend", svc: gen.Service("ns", "web",
			gen.WithAnnotation(model.AnnotationSourceRanges, "203.0.113.0/24, 198.51.100.7/32")),
			check: func(t *testing.T, d *providers.LoadBalancer) {
				if fmt.Sprint(d.SourceRanges) != "[203.0.113.0/24 198.51.100.7/32]" {
					t.Errorf("source ranges %v: a Service restricted by the legacy annotation would be opened to everyone", d.SourceRanges)
				}
			}},
		{name: "malformed legacy source range fails closed", svc: gen.Service("ns", "web", gen.WithAnnotation(model.AnnotationSourceRanges, "office")),
			wantErr: model.ReasonInvalidSourceRange},
		{name: "missing node port", svc: gen.Service("ns", "web", gen.WithPorts(gen.Port("http", corev1.ProtocolTCP, 80, 0))),
			wantErr: model.ReasonNodePortMissing},
		{name: "pod targets need no node port", svc: gen.Service("ns", "web", gen.WithoutNodePorts()), slices: epsOnB,
			check: func(t *testing.T, d *providers.LoadBalancer) {
				if !d.TargetPods || len(d.Endpoints) != 2 || d.Ports[0].TargetPort != 8080 {
					t.Errorf("target pods %v endpoints %v ports %+v", d.TargetPods, d.Endpoints, d.Ports)
				}
			}},
		{name: "malformed annotation", svc: gen.Service("ns", "web", gen.WithAnnotation(model.AnnotationIP, "300.1.1.1")),
			wantErr: model.ReasonInvalidAnnotation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := controllers.Desired(controllers.DesiredInput{ClusterID: "c1", Class: memoryClass, Service: tc.svc, Nodes: nodes, Slices: tc.slices})
			if tc.wantErr != "" {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != tc.wantErr {
					t.Fatalf("got %v, want a ConfigError %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Key != (providers.Key{ClusterID: "c1", Namespace: "ns", Name: "web", UID: "uid-web"}) || d.Class != memoryClass {
				t.Errorf("key %+v class %s", d.Key, d.Class)
			}
			tc.check(t, d)
		})
	}
}

func nodeNames(d *providers.LoadBalancer) string {
	var out []string
	for _, n := range d.Nodes {
		out = append(out, n.Name)
	}
	return fmt.Sprint(out)
}
