package operator

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/model"
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
