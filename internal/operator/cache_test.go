package operator

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
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
