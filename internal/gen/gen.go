// Package gen builds Kubernetes objects for tests, in the style of
// cert-manager's test/unit/gen: a constructor with functional options, so a
// fixture says only what matters to the test.
package gen

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// ServiceOption modifies a Service fixture.
type ServiceOption func(*corev1.Service)

// Service returns a LoadBalancer Service in namespace ns with one TCP port 80
// (nodePort 30080, targetPort 8080) unless options say otherwise.
func Service(ns, name string, opts ...ServiceOption) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080,
				TargetPort: intstr.FromInt32(8080),
			}},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WithClass sets spec.loadBalancerClass.
func WithClass(class string) ServiceOption {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To(class) }
}

// WithAnnotation sets one annotation.
func WithAnnotation(k, v string) ServiceOption {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

// WithPorts replaces the ports.
func WithPorts(ports ...corev1.ServicePort) ServiceOption {
	return func(s *corev1.Service) { s.Spec.Ports = ports }
}

// Port returns a ServicePort; nodePort 0 lets the apiserver allocate one.
func Port(name string, proto corev1.Protocol, port, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port, NodePort: nodePort, TargetPort: intstr.FromInt32(port)}
}

// WithLocalTraffic sets externalTrafficPolicy Local and the health-check port.
func WithLocalTraffic(healthCheckNodePort int32) ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = healthCheckNodePort
	}
}

// WithoutNodePorts sets allocateLoadBalancerNodePorts: false and clears node ports.
func WithoutNodePorts() ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	}
}

// WithSourceRanges sets spec.loadBalancerSourceRanges.
func WithSourceRanges(r ...string) ServiceOption {
	return func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = r }
}

// WithDualStack asks for IPv4 and IPv6.
func WithDualStack() ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyPreferDualStack)
	}
}

// WithClientIPAffinity sets sessionAffinity ClientIP with a timeout.
func WithClientIPAffinity(seconds int32) ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(seconds)}}
	}
}

// ForAPI clears fields the apiserver allocates (UID, node ports) so the
// fixture can be created on a real apiserver.
func ForAPI() ServiceOption {
	return func(s *corev1.Service) {
		s.UID = ""
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	}
}

// NodeOption modifies a Node fixture.
type NodeOption func(*corev1.Node)

// Node returns a Ready node with InternalIP ip and a provider ID.
func Node(name, ip string, opts ...NodeOption) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:       corev1.NodeSpec{ProviderID: "fake://" + name},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

// NotReady marks the node NotReady.
func NotReady() NodeOption {
	return func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }
}

// WithLabel sets a node label.
func WithLabel(k, v string) NodeOption {
	return func(n *corev1.Node) { n.Labels[k] = v }
}

// WithProviderID sets spec.providerID.
func WithProviderID(id string) NodeOption {
	return func(n *corev1.Node) { n.Spec.ProviderID = id }
}

// Endpoint is one endpoint of an EndpointSlice fixture.
type Endpoint struct {
	IP    string
	Node  string
	Ready bool
}

// EndpointSlice returns an IPv4 slice for service with the given endpoints on
// port (named portName).
func EndpointSlice(ns, service, portName string, port int32, eps ...Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-slice", service),
			Labels: map[string]string{discoveryv1.LabelServiceName: service},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.IP},
			NodeName:   ptr.To(e.Node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.Ready), Serving: ptr.To(e.Ready), Terminating: ptr.To(false)},
		})
	}
	return s
}
