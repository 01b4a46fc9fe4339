package testenv

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Eventually polls f every 50ms until it returns nil, failing t after timeout
// with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", timeout, err)
}

// CreateNode creates n with its status (which Create ignores).
func CreateNode(t testing.TB, c client.Client, n *corev1.Node) {
	t.Helper()
	if err := CreateNodeWithStatus(context.Background(), c, n); err != nil {
		t.Fatal(err)
	}
}

// CreateNodeWithStatus creates n and then posts its status, retrying when
// kube-controller-manager (the node lifecycle controller) changed the new
// Node in between.
func CreateNodeWithStatus(ctx context.Context, c client.Client, n *corev1.Node) error {
	status := n.Status
	if err := c.Create(ctx, n); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(n), n); err != nil {
			return err
		}
		n.Status = status
		return c.Status().Update(ctx, n)
	})
}

// UpdateService applies mutate to the current Service, retrying conflicts.
func UpdateService(t testing.TB, c client.Client, svc *corev1.Service, mutate func(*corev1.Service)) {
	t.Helper()
	Eventually(t, 10*time.Second, func() error {
		cur := &corev1.Service{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), cur); err != nil {
			return err
		}
		mutate(cur)
		return c.Update(context.Background(), cur)
	})
}

// DeleteServiceAndWait deletes svc and waits until it is gone, i.e. until the
// operator confirmed the load balancer's deletion and removed its finalizer.
func DeleteServiceAndWait(t testing.TB, c client.Client, svc *corev1.Service) {
	t.Helper()
	if err := c.Delete(context.Background(), svc); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, func() error {
		err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), &corev1.Service{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("service %s still exists (%v)", svc.Name, err)
	})
}

// RunPod creates pod, bound to its Spec.NodeName, and posts the status a
// kubelet would once its containers run: Running, Ready, at ip. It stands in
// for the kubelet of a node the test or the lab plays (the netns lab's pods
// are real processes at ip); kwok runs the Pods of its own nodes. The real
// EndpointSlice controller (Options.Controllers) publishes the Pod for the
// Services that select it.
func RunPod(ctx context.Context, c client.Client, pod *corev1.Pod, ip string) error {
	if pod.Spec.NodeName == "" {
		return fmt.Errorf("pod %s: no node", pod.Name)
	}
	if len(pod.Spec.Containers) == 0 {
		pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "portico.invalid/lab"}}
	}
	if err := c.Create(ctx, pod); err != nil {
		return err
	}
	now := metav1.Now()
	status := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, ctr := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status = status
		return c.Status().Update(ctx, pod)
	})
}

// SetPodReady flips the Ready and ContainersReady conditions of a pod
// RunPod started, as a kubelet does when a readiness probe starts or stops
// passing.
func SetPodReady(ctx context.Context, c client.Client, pod *corev1.Pod, ready bool) error {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), cur); err != nil {
			return err
		}
		for i, cond := range cur.Status.Conditions {
			if (cond.Type == corev1.PodReady || cond.Type == corev1.ContainersReady) && cond.Status != status {
				cur.Status.Conditions[i].Status, cur.Status.Conditions[i].LastTransitionTime = status, metav1.Now()
			}
		}
		for i := range cur.Status.ContainerStatuses {
			cur.Status.ContainerStatuses[i].Ready = ready
		}
		return c.Status().Update(ctx, cur)
	})
}

// LiveHeap is the live heap once everything unreachable is collected, for
// tests that measure what a structure holds.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
