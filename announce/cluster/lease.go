package cluster

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-logr/logr"
)

// LeasePrefix starts the name of every forwarder's Lease:
// portico-forwarder-<node>, in the forwarder's namespace.
const LeasePrefix = "portico-forwarder-"

// LeaseName is the name of node's forwarder Lease.
func LeaseName(node string) string { return LeasePrefix + node }

// LeaseValid reports whether l was renewed within its duration at now.
func LeaseValid(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.LeaseDurationSeconds == nil {
		return false
	}
	renewed := l.Spec.RenewTime
	if renewed == nil {
		renewed = l.Spec.AcquireTime
	}
	if renewed == nil {
		return false
	}
	return now.Before(renewed.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// Lease keeps this forwarder's Lease renewed: the Leases in the namespace
// are the set of nodes that run a forwarder, over which the heartbeat
// quorum is counted. It is a manager.Runnable.
type Lease struct {
	Client    client.Client
	Namespace string
	Node      string
	// Duration is the lease duration; it is renewed every Duration/4.
	Duration time.Duration
	// Annotations, when set, gives annotations written with each renewal
	// (the forwarder's byte snapshot); an empty value removes its key.
	Annotations func() map[string]string
}

// annotate sets the annotations of l.Annotations on lease.
func (l *Lease) annotate(lease *coordinationv1.Lease) {
	if l.Annotations == nil {
		return
	}
	for k, v := range l.Annotations() {
		if v == "" {
			delete(lease.Annotations, k)
			continue
		}
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[k] = v
	}
}

// Start renews the Lease until ctx ends. Failures are logged and retried:
// meanwhile peers stop counting this node and it stands by.
func (l *Lease) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("lease")
	if l.Duration <= 0 {
		l.Duration = 40 * time.Second
	}
	failing := false
	for {
		err := l.renew(ctx)
		switch {
		case err != nil && !failing:
			log.Error(err, "Renewing the forwarder Lease; peers do not count this node until it succeeds")
		case err == nil && failing:
			log.Info("Renewed the forwarder Lease", "Lease", klog.KRef(l.Namespace, LeaseName(l.Node)))
		}
		failing = err != nil
		wait := l.Duration / 4
		if failing {
			wait = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (l *Lease) renew(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	var lease coordinationv1.Lease
	key := client.ObjectKey{Namespace: l.Namespace, Name: LeaseName(l.Node)}
	err := l.Client.Get(ctx, key, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{"app.kubernetes.io/name": "portico", "app.kubernetes.io/component": "forwarder"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(l.Node), LeaseDurationSeconds: ptr.To(int32(l.Duration / time.Second)),
				AcquireTime: &now, RenewTime: &now},
		}
		l.annotate(&lease)
		if err := l.Client.Create(ctx, &lease); err != nil {
			return fmt.Errorf("creating Lease %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Lease %s: %w", key, err)
	}
	lease.Spec.HolderIdentity = ptr.To(l.Node)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(l.Duration / time.Second))
	lease.Spec.RenewTime = &now
	l.annotate(&lease)
	if err := l.Client.Update(ctx, &lease); err != nil {
		return fmt.Errorf("renewing Lease %s: %w", key, err)
	}
	return nil
}
