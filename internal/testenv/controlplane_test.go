package testenv_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/internal/testenv"
)

// TestControlPlane proves the realistic control plane: kwok keeps its
// nodes' status and Leases fresh and runs their Pods to Ready, and leaves
// other nodes alone; the real EndpointSlice controller publishes ready Pods
// for a Service; the garbage collector deletes an object whose owner is
// gone; the namespace controller empties and removes a deleted namespace;
// and the node lifecycle controller marks a node Unknown once its heartbeat
// stops, both for a kwok node and for a node whose heartbeat the harness
// plays (StartHeartbeat), which it keeps Ready while it runs.
func TestControlPlane(t *testing.T) {
	env := testenv.StartWith(t, testenv.Options{Controllers: true, Kwok: true})
	c := env.Client
	ctx := context.Background()
	create := func(o client.Object) {
		t.Helper()
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}

	// A node kwok manages, and one it must not (the lab's kind).
	create(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kwok-1",
		Annotations: map[string]string{testenv.KwokNodeAnnotation: testenv.KwokNodeValue}}})
	create(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "lab-1"}})

	t.Run("kwok node becomes Ready and renews its Lease", func(t *testing.T) {
		testenv.Eventually(t, 30*time.Second, func() error { return readyIs(c, "kwok-1", corev1.ConditionTrue) })
		first := renewTime(t, c, "kwok-1", 30*time.Second)
		testenv.Eventually(t, 3*testenv.LeaseDuration, func() error {
			if now := renewTime(t, c, "kwok-1", time.Second); !now.After(first) {
				return fmt.Errorf("lease renewed last at %s", now)
			}
			return nil
		})
	})

	t.Run("kwok leaves other nodes alone", func(t *testing.T) {
		// kwok-1 is Ready by now, so kwok runs; lab-1 has had the same time.
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: "lab-1"}, n); err != nil {
			t.Fatal(err)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				t.Fatalf("kwok made the unannotated node Ready: %+v", cond)
			}
		}
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: testenv.NodeLeaseNamespace, Name: "lab-1"}, lease); !apierrors.IsNotFound(err) {
			t.Fatalf("a Lease for the unannotated node: %v %+v", err, lease.Spec)
		}
	})

	var kwokPodIP string
	hb := testenv.StartHeartbeat(c, "lab-1")
	t.Cleanup(hb.Stop)

	t.Run("pods on a kwok node become Ready and the EndpointSlice controller publishes them", func(t *testing.T) {
		create(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}})
		create(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: "kwok-1", Containers: []corev1.Container{{Name: "web", Image: "web"}}}})
		testenv.Eventually(t, 30*time.Second, func() error {
			p := &corev1.Pod{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "web-1"}, p); err != nil {
				return err
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
					kwokPodIP = p.Status.PodIP
					return nil
				}
			}
			return fmt.Errorf("pod not ready: phase %s, conditions %v", p.Status.Phase, p.Status.Conditions)
		})
		testenv.Eventually(t, 30*time.Second, func() error { return endpointIs(c, "web", kwokPodIP, "kwok-1", true) })
	})

	t.Run("a pod the harness runs on a lab node is published, and unpublished when not ready", func(t *testing.T) {
		create(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "lab"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "lab"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}})
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "lab-pod", Labels: map[string]string{"app": "lab"}},
			Spec: corev1.PodSpec{NodeName: "lab-1"}}
		if err := testenv.RunPod(ctx, c, pod, "10.200.1.2"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error { return endpointIs(c, "lab", "10.200.1.2", "lab-1", true) })
		if err := testenv.SetPodReady(ctx, c, pod, false); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error { return endpointIs(c, "lab", "10.200.1.2", "lab-1", false) })
	})

	t.Run("the garbage collector deletes what a deleted owner owned", func(t *testing.T) {
		owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "owner"}}
		create(owner)
		dep := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "dependent",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}}}}
		create(dep)
		if err := c.Delete(ctx, owner); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 60*time.Second, func() error { return gone(c, dep) })
	})

	t.Run("the namespace controller removes a deleted namespace", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}
		create(ns)
		create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "doomed", Name: "content"}})
		if err := c.Delete(ctx, ns); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 60*time.Second, func() error { return gone(c, ns) })
	})

	t.Run("the heartbeat keeps a lab node Ready", func(t *testing.T) {
		testenv.Eventually(t, 10*time.Second, func() error { return readyIs(c, "lab-1", corev1.ConditionTrue) })
		// Past the grace period, the node lifecycle controller still sees it alive.
		time.Sleep(testenv.NodeMonitorGracePeriod + 3*time.Second)
		if err := readyIs(c, "lab-1", corev1.ConditionTrue); err != nil {
			t.Fatalf("with its heartbeat running: %v (heartbeat error: %v)", err, hb.Err())
		}
		if err := readyIs(c, "kwok-1", corev1.ConditionTrue); err != nil {
			t.Fatalf("kwok node: %v", err)
		}
	})

	t.Run("nodes whose heartbeat stops become Unknown and unreachable", func(t *testing.T) {
		hb.Stop()
		if err := testenv.StopKwokNode(ctx, c, "kwok-1"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"lab-1", "kwok-1"} {
			testenv.Eventually(t, testenv.NodeMonitorGracePeriod+20*time.Second, func() error {
				if err := readyIs(c, name, corev1.ConditionUnknown); err != nil {
					return err
				}
				n := &corev1.Node{}
				if err := c.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
					return err
				}
				for _, taint := range n.Spec.Taints {
					if taint.Key == corev1.TaintNodeUnreachable {
						return nil
					}
				}
				return fmt.Errorf("node %s has no %s taint: %v", name, corev1.TaintNodeUnreachable, n.Spec.Taints)
			})
		}
		// The node lifecycle controller marks the dead node's pods not
		// ready, and the EndpointSlice controller follows.
		testenv.Eventually(t, 30*time.Second, func() error { return endpointIs(c, "web", kwokPodIP, "kwok-1", false) })
	})

	t.Run("a stopped kwok node comes back", func(t *testing.T) {
		if err := testenv.StartKwokNode(ctx, c, "kwok-1"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, func() error { return readyIs(c, "kwok-1", corev1.ConditionTrue) })
	})
}

// endpointIs checks that the EndpointSlice controller publishes ip on node
// for service with the given readiness.
func endpointIs(c client.Client, service, ip, node string, ready bool) error {
	var slices discoveryv1.EndpointSliceList
	if err := c.List(context.Background(), &slices, client.InNamespace("default"), client.MatchingLabels{
		discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}); err != nil {
		return err
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 1 && ep.Addresses[0] == ip && ep.NodeName != nil && *ep.NodeName == node &&
				ep.Conditions.Ready != nil && *ep.Conditions.Ready == ready {
				return nil
			}
		}
	}
	return fmt.Errorf("no endpoint %s on %s with ready=%v in %+v", ip, node, ready, slices.Items)
}

func readyIs(c client.Client, node string, want corev1.ConditionStatus) error {
	n := &corev1.Node{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: node}, n); err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status != want {
				return fmt.Errorf("node %s Ready=%s (%s), want %s", node, cond.Status, cond.Reason, want)
			}
			return nil
		}
	}
	return fmt.Errorf("node %s has no Ready condition", node)
}

func renewTime(t *testing.T, c client.Client, node string, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	testenv.Eventually(t, timeout, func() error {
		lease := &coordinationv1.Lease{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: testenv.NodeLeaseNamespace, Name: node}, lease); err != nil {
			return err
		}
		if lease.Spec.RenewTime == nil {
			return fmt.Errorf("lease %s never renewed", node)
		}
		at = lease.Spec.RenewTime.Time
		return nil
	})
	return at
}

func gone(c client.Client, o client.Object) error {
	err := c.Get(context.Background(), client.ObjectKeyFromObject(o), o.DeepCopyObject().(client.Object))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("%s still exists (%v)", o.GetName(), err)
}

// TestComponentThatDiesFailsStart: a kube-controller-manager that exits at
// once (a flag its version refuses, say) fails NewWith with its log, instead
// of leaving a control plane that silently lacks its controllers.
func TestComponentThatDiesFailsStart(t *testing.T) {
	bins, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl", "kwok"} {
		if err := os.Symlink(filepath.Join(bins, b), filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	fake := "#!/bin/sh\necho 'Error: unknown flag: --node-monitor-period'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "kube-controller-manager"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBEBUILDER_ASSETS", dir)
	env, err := testenv.NewWith(testenv.Options{Controllers: true})
	if err == nil {
		_ = env.Stop()
		t.Fatal("NewWith succeeded with a kube-controller-manager that exits at once")
	}
	if !strings.Contains(err.Error(), "exited unexpectedly") || !strings.Contains(err.Error(), "unknown flag") {
		t.Fatalf("error %q does not say that kube-controller-manager exited, with its log", err)
	}
}
