package bgp

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// TestWatcherMarks: events name the Services they concern; only this node,
// and spec or label changes of the shared objects, replan everything.
func TestWatcherMarks(t *testing.T) {
	w := &Watcher{Self: "n1", kick: make(chan struct{}, 1)}
	take := func() (bool, []string) {
		full, keys := w.full, sortedKeys(w.dirty)
		w.full, w.dirty = false, nil
		return full, keys
	}
	w.changes(serviceKey).OnUpdate(nil, svc("a", false))
	es := endpoints("b", nil)
	w.changes(sliceKey).OnDelete(toolscache.DeletedFinalStateUnknown{Key: "ns/b-1", Obj: &es})
	if full, keys := take(); full || len(keys) != 2 || keys[0] != "ns/a" || keys[1] != "ns/b" {
		t.Errorf("full %v keys %v, want ns/a and ns/b only", full, keys)
	}
	moved := endpoints("c", nil)
	w.changes(sliceKey).OnUpdate(&es, &moved)
	if full, keys := take(); full || len(keys) != 2 || keys[0] != "ns/b" || keys[1] != "ns/c" {
		t.Errorf("a slice moving from b to c marked full %v keys %v, want both", full, keys)
	}
	p1 := peer("tor", "10.88.0.254")
	p1.Generation = 1
	p2 := *p1.DeepCopy()
	p2.Status.Sessions = []lbv1.BGPSession{{Node: "n2", State: StateEstablished}}
	w.specChanges().OnUpdate(&p1, &p2)
	if full, keys := take(); full || len(keys) != 0 {
		t.Errorf("a status write marked full %v keys %v", full, keys)
	}
	p2.Generation = 2
	w.specChanges().OnUpdate(&p1, &p2)
	if full, _ := take(); !full {
		t.Error("a spec change did not replan everything")
	}
	pl1, pl2 := pool("p", "BGP", "10.64.0.0/24"), pool("p", "BGP", "10.64.0.0/24")
	pl1.Generation, pl2.Generation = 3, 3
	pl2.Labels = map[string]string{"pool": "other"}
	w.specChanges().OnUpdate(&pl1, &pl2)
	if full, _ := take(); !full {
		t.Error("a label change did not replan everything")
	}
	self := w.nodeKey
	w.changes(self).OnUpdate(nil, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	if full, keys := take(); full || len(keys) != 0 {
		t.Errorf("another node's change marked full %v keys %v", full, keys)
	}
	w.changes(self).OnUpdate(nil, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	if full, _ := take(); !full {
		t.Error("this node's change did not replan everything")
	}

	// Of this node, Plan reads the labels and eligibility: a heartbeat
	// replans nothing, a relabelling or readiness change everything.
	n1 := testNode("n1", true, map[string]string{"rack": "a"})
	beat := n1.DeepCopy()
	beat.ResourceVersion = "2"
	beat.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
	w.nodeChanges().OnUpdate(n1, beat)
	if full, keys := take(); full || len(keys) != 0 {
		t.Errorf("a heartbeat marked full %v keys %v", full, keys)
	}
	relabelled := n1.DeepCopy()
	relabelled.Labels["rack"] = "b"
	w.nodeChanges().OnUpdate(n1, relabelled)
	if full, _ := take(); !full {
		t.Error("relabelling this node did not replan everything")
	}
	other := testNode("n2", true, map[string]string{"rack": "a"})
	otherRelabelled := other.DeepCopy()
	otherRelabelled.Labels["rack"] = "b"
	w.nodeChanges().OnUpdate(other, otherRelabelled)
	if full, keys := take(); full || len(keys) != 0 {
		t.Errorf("relabelling another node marked full %v keys %v", full, keys)
	}
	w.nodeChanges().OnUpdate(n1, testNode("n1", false, map[string]string{"rack": "a"}))
	if full, _ := take(); !full {
		t.Error("this node turning NotReady did not replan everything")
	}
	w.nodeChanges().OnDelete(toolscache.DeletedFinalStateUnknown{Key: "n1", Obj: n1})
	if full, _ := take(); !full {
		t.Error("this node's deletion did not replan everything")
	}
}
