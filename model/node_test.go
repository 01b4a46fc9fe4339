package model_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/model"
)

// nodeUpdates are the updates a kubelet, the cloud node controller, the node
// lifecycle controller, the cluster autoscaler and an administrator make to a
// Node, and whether each can change a load balancer.
var nodeUpdates = []struct {
	name    string
	by      string
	update  func(n *corev1.Node)
	changed bool
}{
	{"heartbeat", "kubelet", func(n *corev1.Node) {
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(time.Unix(2000, 0))
		}
	}, false},
	{"memory pressure condition", "kubelet", func(n *corev1.Node) {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue})
	}, false},
	{"images", "kubelet", func(n *corev1.Node) {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{"registry.example/app:v2"}, SizeBytes: 1 << 20})
	}, false},
	{"allocatable", "kubelet", func(n *corev1.Node) {
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}
	}, false},
	{"volumes in use", "kubelet", func(n *corev1.Node) { n.Status.VolumesInUse = []corev1.UniqueVolumeName{"kubernetes.io/csi/x"} }, false},
	{"resource version only", "apiserver", func(n *corev1.Node) { n.ResourceVersion = "999" }, false},
	{"unrelated label", "administrator", func(n *corev1.Node) { n.Labels["team"] = "payments" }, false},
	{"annotation", "administrator", func(n *corev1.Node) {
		n.Annotations = map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
	}, false},
	{"unrelated taint", "administrator", func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule})
	}, false},
	{"cordon", "administrator", func(n *corev1.Node) { n.Spec.Unschedulable = true }, false},
	{"same addresses re-sent", "cloud node controller", func(n *corev1.Node) {
		n.Status.Addresses = append([]corev1.NodeAddress(nil), n.Status.Addresses...)
	}, false},

	{"not ready", "node lifecycle controller", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown }, true},
	{"internal IP changed", "cloud node controller", func(n *corev1.Node) { n.Status.Addresses[0].Address = "10.0.0.99" }, true},
	{"external IP added", "cloud node controller", func(n *corev1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.5"})
	}, true},
	{"hostname address added", "cloud node controller", func(n *corev1.Node) {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n1.example"})
	}, false},
	{"provider ID set", "cloud node controller", func(n *corev1.Node) { n.Spec.ProviderID = "aws:///eu-west-1a/i-0123456789abcdef0" }, true},
	{"zone label set", "cloud node controller", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "eu-west-1a" }, true},
	{"excluded", "administrator", func(n *corev1.Node) { n.Labels[corev1.LabelNodeExcludeBalancers] = "" }, true},
	{"autoscaler drain taint", "cluster autoscaler", func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: model.TaintToBeDeleted, Effect: corev1.TaintEffectNoSchedule})
	}, true},
	{"deleted", "administrator", func(n *corev1.Node) { n.DeletionTimestamp = &metav1.Time{Time: time.Unix(3000, 0)} }, true},
}

func TestNodeChanged(t *testing.T) {
	for _, tc := range nodeUpdates {
		t.Run(tc.by+"/"+tc.name, func(t *testing.T) {
			old := gen.Node("n1", "10.0.0.1")
			n := old.DeepCopy()
			tc.update(n)
			if got := model.NodeChanged(old, n); got != tc.changed {
				t.Errorf("NodeChanged = %v, want %v", got, tc.changed)
			}
			// The reverse update (a node coming back) is a change exactly
			// when the forward one is.
			if got := model.NodeChanged(n, old); got != tc.changed {
				t.Errorf("NodeChanged (reversed) = %v, want %v", got, tc.changed)
			}
		})
	}
}

func TestEligibleNode(t *testing.T) {
	for _, tc := range nodeUpdates {
		n := gen.Node("n1", "10.0.0.1")
		tc.update(n)
		want := true
		switch tc.name {
		case "not ready", "excluded", "autoscaler drain taint", "deleted":
			want = false
		}
		if got := model.EligibleNode(n); got != want {
			t.Errorf("%s: EligibleNode = %v, want %v", tc.name, got, want)
		}
	}
}
