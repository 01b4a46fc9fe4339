package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	status := n.Status
	if err := c.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	n.Status = status
	if err := c.Status().Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
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
