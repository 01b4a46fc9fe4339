package testenv

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NodeLeaseNamespace holds the kubelets' node Leases.
const NodeLeaseNamespace = corev1.NamespaceNodeLease

// Heartbeat plays a kubelet's liveness for one Node the test or the lab
// runs itself (kwok's nodes have kwok): it renews the node's Lease in
// kube-node-lease every quarter of LeaseDuration, as the kubelet does, and
// posts the Ready condition (True, with a fresh heartbeat time) when it is
// missing or not True because the node lifecycle controller marked it
// Unknown, and otherwise every LeaseDuration. Stop it to make the node die.
type Heartbeat struct {
	c      client.Client
	node   string
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

// StartHeartbeat starts the heartbeat of node, which must exist.
func StartHeartbeat(c client.Client, node string) *Heartbeat {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Heartbeat{c: c, node: node, cancel: cancel, done: make(chan struct{})}
	go h.run(ctx)
	return h
}

// Stop stops the heartbeat; the node lifecycle controller marks the node
// Unknown NodeMonitorGracePeriod after the last renewal.
func (h *Heartbeat) Stop() {
	h.cancel()
	<-h.done
}

// Err returns the last error of a beat, nil once a beat succeeds again.
func (h *Heartbeat) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *Heartbeat) run(ctx context.Context) {
	defer close(h.done)
	tick := time.NewTicker(LeaseDuration / 4)
	defer tick.Stop()
	lastStatus := time.Time{}
	for {
		err := h.renewLease(ctx)
		if err == nil && time.Since(lastStatus) >= LeaseDuration {
			if err = h.postReady(ctx); err == nil {
				lastStatus = time.Now()
			}
		} else if err == nil {
			// Between status posts, still repair a Ready condition the node
			// lifecycle controller took away while the heartbeat was late.
			err = h.repairReady(ctx)
		}
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (h *Heartbeat) renewLease(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{}
	err := h.c.Get(ctx, client.ObjectKey{Namespace: NodeLeaseNamespace, Name: h.node}, lease)
	if apierrors.IsNotFound(err) {
		node := &corev1.Node{}
		if err := h.c.Get(ctx, client.ObjectKey{Name: h.node}, node); err != nil {
			return fmt.Errorf("node %s: %w", h.node, err)
		}
		// Owned by its Node, as the kubelet makes it: the garbage collector
		// removes it with the Node.
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: NodeLeaseNamespace, Name: h.node,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(h.node),
				LeaseDurationSeconds: ptr.To(int32(LeaseDuration / time.Second)), RenewTime: &now},
		}
		return h.c.Create(ctx, lease)
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	return h.c.Update(ctx, lease)
}

// postReady sets the Ready condition True with a fresh heartbeat time.
func (h *Heartbeat) postReady(ctx context.Context) error {
	node := &corev1.Node{}
	if err := h.c.Get(ctx, client.ObjectKey{Name: h.node}, node); err != nil {
		return err
	}
	setReady(node)
	return h.c.Status().Update(ctx, node)
}

func (h *Heartbeat) repairReady(ctx context.Context) error {
	node := &corev1.Node{}
	if err := h.c.Get(ctx, client.ObjectKey{Name: h.node}, node); err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	setReady(node)
	return h.c.Status().Update(ctx, node)
}

func setReady(node *corev1.Node) {
	now := metav1.Now()
	for i, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			c.Status, c.LastTransitionTime = corev1.ConditionTrue, now
			c.Reason, c.Message = "KubeletReady", "heartbeat of the test harness"
		}
		c.LastHeartbeatTime = now
		node.Status.Conditions[i] = c
		return
	}
	node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "heartbeat of the test harness", LastHeartbeatTime: now, LastTransitionTime: now,
	})
}

// StopKwokNode kills a kwok node: it takes over the node's Lease for an
// hour, and kwok manages only the nodes whose Leases it holds, so it stops
// renewing the Lease and updating the node and its Pods. The node lifecycle
// controller marks it Unknown NodeMonitorGracePeriod later.
func StopKwokNode(ctx context.Context, c client.Client, node string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: NodeLeaseNamespace, Name: node}, lease); err != nil {
			return err
		}
		lease.Spec.HolderIdentity = ptr.To("portico-test-dead-node")
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(3600))
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
		return c.Update(ctx, lease)
	})
}

// StartKwokNode brings a node StopKwokNode killed back: it clears the
// Lease's holder, kwok takes the Lease over at its next try (every quarter of
// LeaseDuration) and posts the node Ready again.
func StartKwokNode(ctx context.Context, c client.Client, node string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: NodeLeaseNamespace, Name: node}, lease); err != nil {
			return err
		}
		lease.Spec.HolderIdentity = nil
		return c.Update(ctx, lease)
	})
}
