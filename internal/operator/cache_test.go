package operator

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers/local"
)

// kubeletNode is a Node as a kubelet and the cloud node controller leave it.
func kubeletNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: "n1", UID: "u1", ResourceVersion: "7",
			Labels:        map[string]string{"kubernetes.io/hostname": "n1", model.LabelZone: "zone-a"},
			Annotations:   map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
		},
		Spec: corev1.NodeSpec{ProviderID: "aws:///zone-a/i-1", PodCIDR: "10.244.0.0/24",
			Taints: []corev1.Taint{{Key: model.TaintToBeDeleted, Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3900m")},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
			},
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "n1"}},
			NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: "v1.37.1", OSImage: "Debian GNU/Linux 13", MachineID: "abc"},
			Images:          []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 1}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		},
	}
}

// TestNodeCacheKeepsOnlyWhatPorticoReads: the operator's cache keeps of a
// Node only what model reads (name, labels, deletion, provider ID, taints,
// the Ready condition, addresses): at thousands of Nodes the kubelet's
// system info, resources, images and other conditions were most of each
// cached Node. Every decision about the Node is the same on the trimmed copy.
func TestNodeCacheKeepsOnlyWhatPorticoReads(t *testing.T) {
	var transform func(any) (any, error)
	for obj, by := range cacheOptions().ByObject {
		if _, ok := obj.(*corev1.Node); ok {
			transform = by.Transform
		}
	}
	if transform == nil {
		t.Fatal("no transform for Nodes")
	}
	for _, mutate := range []func(*corev1.Node){
		func(*corev1.Node) {},
		func(n *corev1.Node) { n.Spec.Taints = nil },
		func(n *corev1.Node) { n.Status.Conditions[1].Status = corev1.ConditionFalse },
		func(n *corev1.Node) { n.Labels[model.LabelExcludeFromLB] = "" },
		func(n *corev1.Node) { n.DeletionTimestamp = &metav1.Time{} },
		func(n *corev1.Node) { n.Labels["rack"] = "b" },
	} {
		full := kubeletNode()
		mutate(full)
		out, err := transform(full.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		trimmed := out.(*corev1.Node)
		if model.EligibleNode(trimmed) != model.EligibleNode(full) || !reflect.DeepEqual(model.ProviderNode(trimmed), model.ProviderNode(full)) {
			t.Errorf("the trimmed Node decides differently: eligible %v/%v, %+v / %+v", model.EligibleNode(trimmed), model.EligibleNode(full), model.ProviderNode(trimmed), model.ProviderNode(full))
		}
		// BGPPeer nodeSelectors read the labels (bgp.Plan in the
		// forwarders, local.BGPStatus in the operator).
		for _, sel := range bgpSelectors {
			if model.Selects(sel, trimmed.Labels) != model.Selects(sel, full.Labels) {
				t.Errorf("the trimmed Node is selected differently by %v", sel)
			}
		}
		if trimmed.Name != full.Name || trimmed.ResourceVersion != full.ResourceVersion || trimmed.UID != full.UID {
			t.Errorf("identity lost: %+v", trimmed.ObjectMeta)
		}
		st := trimmed.Status
		if trimmed.ManagedFields != nil || trimmed.Annotations != nil || st.Images != nil || st.Capacity != nil || st.Allocatable != nil ||
			st.NodeInfo != (corev1.NodeSystemInfo{}) || len(st.Conditions) != 1 || st.DaemonEndpoints != (corev1.NodeDaemonEndpoints{}) || trimmed.Spec.PodCIDR != "" {
			t.Errorf("the cached Node keeps what Portico never reads: %+v", trimmed)
		}
	}
}

// bgpSelectors are BGPPeer nodeSelectors of every kind.
var bgpSelectors = []*metav1.LabelSelector{
	nil,
	{MatchLabels: map[string]string{"rack": "a"}},
	{MatchLabels: map[string]string{model.LabelZone: "zone-a"}},
	{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: metav1.LabelSelectorOpExists}}},
	{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "rack", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"b"}}}},
}

// TestNodeHeartbeatIsNoChange: of two cached copies of a Node that differ by
// a heartbeat (the kubelet's or kwok's: heartbeat times, a new
// resourceVersion, images), no decision sees a change: not the backends'
// (model.NodeChanged), not BGP's (which BGPPeers select the node), so a
// heartbeat costs no reconcile and no write. A relabelling that moves the
// node in or out of a BGPPeer's nodeSelector is a change (issue 17: the
// status of the node's routes must not wait for the resync); one no
// selector reads is not.
func TestNodeHeartbeatIsNoChange(t *testing.T) {
	var transform func(any) (any, error)
	for obj, by := range cacheOptions().ByObject {
		if _, ok := obj.(*corev1.Node); ok {
			transform = by.Transform
		}
	}
	cached := func(mutate func(*corev1.Node)) *corev1.Node {
		n := kubeletNode()
		n.Labels["rack"] = "a"
		mutate(n)
		out, err := transform(n)
		if err != nil {
			t.Fatal(err)
		}
		return out.(*corev1.Node)
	}
	var peers []lbv1.BGPPeer
	for _, sel := range bgpSelectors {
		peers = append(peers, lbv1.BGPPeer{Spec: lbv1.BGPPeerSpec{NodeSelector: sel}})
	}
	before := cached(func(*corev1.Node) {})
	for _, c := range []struct {
		name   string
		mutate func(*corev1.Node)
		change bool
	}{
		{"heartbeat", func(n *corev1.Node) {
			n.ResourceVersion = "8"
			for i := range n.Status.Conditions {
				n.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
			}
			n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{"img:2"}})
		}, false},
		{"unrelated label", func(n *corev1.Node) { n.Labels["team"] = "x" }, false},
		{"relabelled out of a peer", func(n *corev1.Node) { n.Labels["rack"] = "b" }, true},
		{"label a peer requires removed", func(n *corev1.Node) { delete(n.Labels, "rack") }, true},
	} {
		after := cached(c.mutate)
		if model.NodeChanged(before, after) {
			t.Errorf("%s: model.NodeChanged says the backends must see it", c.name)
		}
		if got := local.PeerSelectionChanged(peers, before.Labels, after.Labels); got != c.change {
			t.Errorf("%s: BGP peer selection changed %v, want %v", c.name, got, c.change)
		}
	}
}

// transformFor returns the cache's transform for objects like obj.
func transformFor(t *testing.T, obj client.Object) func(any) (any, error) {
	t.Helper()
	for o, by := range cacheOptions().ByObject {
		if reflect.TypeOf(o) == reflect.TypeOf(obj) && by.Transform != nil {
			return by.Transform
		}
	}
	t.Fatalf("no transform for %T", obj)
	return nil
}

func transformed[T client.Object](t *testing.T, obj T) T {
	t.Helper()
	out, err := transformFor(t, obj)(obj.DeepCopyObject())
	if err != nil {
		t.Fatal(err)
	}
	return out.(T)
}

// appliedService is a LoadBalancer Service as kubectl apply leaves it, with
// Portico's finalizer and status.
func appliedService() *corev1.Service {
	svc := gen.Service("web", "shop", gen.WithClass("lb.portico.dev/memory"), gen.ForAPI())
	svc.UID, svc.ResourceVersion, svc.Generation = "u1", "9", 2
	svc.Finalizers = []string{controllers.Finalizer}
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl-client-side-apply"}}
	svc.Labels = map[string]string{"app": "shop"}
	svc.Annotations = map[string]string{
		corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"shop"},"spec":{"type":"LoadBalancer","ports":[{"port":80}]}}`,
		model.AnnotationAllowSharedIP:      "team-a",
	}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "10.96.0.10", []string{"10.96.0.10"}
	svc.Spec.Ports[0].NodePort = 30080
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.7", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	svc.Status.Conditions = []metav1.Condition{{Type: controllers.ConditionReady, Status: metav1.ConditionTrue, Reason: "Provisioned"}}
	return svc
}

// TestServiceCacheKeepsOnlyWhatPorticoReads: of a LoadBalancer Service (or
// one Portico still holds by its finalizer) the cache drops only kubectl's
// last-applied configuration, a second copy of the spec that nothing in
// Portico reads; of every other Service (in a real cluster most of them:
// ClusterIP, headless, NodePort) it keeps only what decides that Portico has
// nothing to do with it: identity, type, class, finalizers, deletion.
func TestServiceCacheKeepsOnlyWhatPorticoReads(t *testing.T) {
	full := appliedService()
	trimmed := transformed(t, full.DeepCopy())
	if _, ok := trimmed.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		t.Error("the cached Service keeps kubectl's last-applied configuration")
	}
	want := full.DeepCopy()
	want.ManagedFields = nil
	delete(want.Annotations, corev1.LastAppliedConfigAnnotation)
	if !reflect.DeepEqual(trimmed, want) {
		t.Errorf("the cached LoadBalancer Service lost more than the last-applied annotation:\n got %+v\nwant %+v", trimmed, want)
	}
	dFull, errFull := controllers.Desired(controllers.DesiredInput{ClusterID: "c", Class: "lb.portico.dev/memory", Service: full})
	dTrim, errTrim := controllers.Desired(controllers.DesiredInput{ClusterID: "c", Class: "lb.portico.dev/memory", Service: trimmed})
	if errFull != nil || errTrim != nil {
		t.Fatal(errFull, errTrim)
	}
	delete(dFull.Annotations, corev1.LastAppliedConfigAnnotation)
	if !reflect.DeepEqual(dFull, dTrim) {
		t.Errorf("the trimmed Service decides differently:\n%+v\n%+v", dFull, dTrim)
	}

	// Type changed away from LoadBalancer: Portico still holds it by its
	// finalizer and cleans up from the cached copy.
	leaving := full.DeepCopy()
	leaving.Spec.Type = corev1.ServiceTypeClusterIP
	if got := transformed(t, leaving.DeepCopy()); !reflect.DeepEqual(got.Spec, leaving.Spec) || !reflect.DeepEqual(got.Status, leaving.Status) {
		t.Errorf("a Service Portico still holds lost its spec or status: %+v", got)
	}

	other := full.DeepCopy()
	other.Spec.Type = corev1.ServiceTypeClusterIP
	other.Spec.LoadBalancerClass = nil
	other.Finalizers = []string{"example.com/other"}
	other.Status = corev1.ServiceStatus{}
	got := transformed(t, other.DeepCopy())
	if got.Name != other.Name || got.Namespace != other.Namespace || got.UID != other.UID || got.ResourceVersion != other.ResourceVersion ||
		got.Spec.Type != corev1.ServiceTypeClusterIP || !reflect.DeepEqual(got.Finalizers, other.Finalizers) {
		t.Errorf("a ClusterIP Service lost what decides it is not Portico's: %+v", got)
	}
	if got.Annotations != nil || got.Labels != nil || got.ManagedFields != nil || got.Spec.Ports != nil || got.Spec.Selector != nil || got.Spec.ClusterIPs != nil {
		t.Errorf("the cached ClusterIP Service keeps what Portico never reads: %+v", got)
	}
	if (model.Classes{Enabled: []string{"lb.portico.dev/memory"}, Default: "lb.portico.dev/memory"}).For(got) != "" {
		t.Error("the trimmed ClusterIP Service is taken for Portico's")
	}
}

// controllerSlice is an EndpointSlice as the EndpointSlice controller writes
// it.
func controllerSlice() *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "shop-abcde", UID: "s1", ResourceVersion: "5", Generation: 3,
			Labels:          map[string]string{discoveryv1.LabelServiceName: "shop", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
			Annotations:     map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-11-30T07:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "shop", UID: "u1"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "endpointslice-controller"}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, NodeName: ptr.To("n1"), Zone: ptr.To("zone-a"), Hostname: ptr.To("shop-0"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "web", Name: "shop-7d9f-x2x", UID: "p1"},
				Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}}},
			{Addresses: []string{"10.244.2.6"}, NodeName: ptr.To("n2"), Zone: ptr.To("zone-b"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "web", Name: "shop-7d9f-y3y", UID: "p2"}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

// TestEndpointSliceCacheKeepsOnlyWhatPorticoReads: the operator caches every
// EndpointSlice of the cluster, most of them for Services Portico does not
// serve; it keeps of each only what the desired state and the Serving
// condition read (the Service label, addresses, node, conditions, ports), not
// the pods' references, hostnames, zones, hints or annotations.
func TestEndpointSliceCacheKeepsOnlyWhatPorticoReads(t *testing.T) {
	full := controllerSlice()
	trimmed := transformed(t, full.DeepCopy())
	svc := appliedService()
	svc.Spec.Ports[0].TargetPort = intstr.FromString("http")
	for _, policy := range []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal} {
		svc.Spec.ExternalTrafficPolicy = policy
		in := controllers.DesiredInput{ClusterID: "c", Class: "lb.portico.dev/memory", Service: svc, Nodes: []corev1.Node{*kubeletNode()}}
		in.Slices = []discoveryv1.EndpointSlice{*full}
		dFull, err := controllers.Desired(in)
		if err != nil {
			t.Fatal(err)
		}
		in.Slices = []discoveryv1.EndpointSlice{*trimmed}
		dTrim, err := controllers.Desired(in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(dFull, dTrim) {
			t.Errorf("%s: the trimmed slice decides differently:\n%+v\n%+v", policy, dFull, dTrim)
		}
	}
	if !reflect.DeepEqual(model.EndpointNodes([]discoveryv1.EndpointSlice{*full}), model.EndpointNodes([]discoveryv1.EndpointSlice{*trimmed})) {
		t.Error("the trimmed slice gives other endpoint nodes")
	}
	if trimmed.Name != full.Name || trimmed.Namespace != full.Namespace || trimmed.ResourceVersion != full.ResourceVersion ||
		trimmed.Labels[discoveryv1.LabelServiceName] != "shop" {
		t.Errorf("identity or Service label lost: %+v", trimmed.ObjectMeta)
	}
	if trimmed.Annotations != nil || trimmed.OwnerReferences != nil || trimmed.ManagedFields != nil {
		t.Errorf("the cached slice keeps metadata Portico never reads: %+v", trimmed.ObjectMeta)
	}
	for _, e := range trimmed.Endpoints {
		if e.TargetRef != nil || e.Hostname != nil || e.Zone != nil || e.Hints != nil {
			t.Errorf("the cached endpoint keeps what Portico never reads: %+v", e)
		}
	}
}
