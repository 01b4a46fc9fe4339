package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/announce"
	"github.com/portico-lb/portico/api/v1alpha1"
)

// FieldManager is the server-side apply field manager of the forwarder.
const FieldManager = "portico-forwarder"

// Recorder emits Events (events.k8s.io); the forwarder's eventrec.Recorder
// (like controller-runtime's manager.GetEventRecorder) satisfies it.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// RBAC of portico-forwarder (controller-gen rbac:roleName=portico-forwarder
// paths=./announce/cluster/...).
// +kubebuilder:rbac:groups="",resources=services;nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=lb.portico.dev,resources=loadbalancers;ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=lb.portico.dev,resources=loadbalancers/status,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=portico-system,resources=leases,verbs=get;list;watch;create;update

// Watcher is a manager.Runnable that feeds the announcer from the cache and
// publishes its decisions.
type Watcher struct {
	Self          string
	HeartbeatPort uint16
	// Namespace holds the forwarders' Leases; Cache must watch Leases
	// there.
	Namespace string
	Cache     cache.Cache
	// Client writes LoadBalancer status; reads go through Cache.
	Client    client.Client
	Recorder  Recorder
	Members   *announce.Members
	Announcer *announce.Announcer
}

// Start runs until ctx ends.
func (w *Watcher) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("watcher")
	kick := make(chan struct{}, 1)
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signalKick(kick) },
		UpdateFunc: func(any, any) { signalKick(kick) },
		DeleteFunc: func(any) { signalKick(kick) },
	}
	for _, obj := range []client.Object{&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{}, &v1alpha1.LoadBalancer{}, &v1alpha1.IPPool{}, &coordinationv1.Lease{}} {
		inf, err := w.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	if !w.Cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("cache did not sync")
	}
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	// Leases expire without an event: look again now and then.
	resync := time.NewTicker(5 * time.Second)
	defer resync.Stop()
	signalKick(kick)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-resync.C:
		case <-kick:
		case <-w.Announcer.OwnersChanged():
		case <-retry.C:
		}
		if err := w.sync(ctx); err != nil {
			log.Error(err, "Syncing announcements; retrying")
			retry.Reset(time.Second)
		}
	}
}

func signalKick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (w *Watcher) sync(ctx context.Context) error {
	var snap Snapshot
	var svcs corev1.ServiceList
	var eps discoveryv1.EndpointSliceList
	var nodes corev1.NodeList
	var recs v1alpha1.LoadBalancerList
	var leases coordinationv1.LeaseList
	var pools v1alpha1.IPPoolList
	for _, l := range []client.ObjectList{&svcs, &eps, &nodes, &recs, &pools} {
		if err := w.Cache.List(ctx, l); err != nil {
			return fmt.Errorf("listing %T: %w", l, err)
		}
	}
	if err := w.Cache.List(ctx, &leases, client.InNamespace(w.Namespace)); err != nil {
		return fmt.Errorf("listing Leases: %w", err)
	}
	snap.Services, snap.EndpointSlices, snap.Nodes, snap.LoadBalancers = svcs.Items, eps.Items, nodes.Items, recs.Items
	snap.Leases = leases.Items
	snap.Pools = pools.Items
	in, peers := BuildInputs(snap, w.Self, w.HeartbeatPort, time.Now())
	w.Members.SetPeers(peers)
	w.Announcer.SetInputs(in)
	return w.publish(ctx, snap.Local())
}

func (w *Watcher) publish(ctx context.Context, svcs []*corev1.Service) error {
	owners := w.Announcer.Owners()
	mine := w.Announcer.Mine()
	var firstErr error
	for _, svc := range svcs {
		if !Publisher(svc, w.Self, mine) {
			continue
		}
		var lb v1alpha1.LoadBalancer
		if err := w.Cache.Get(ctx, client.ObjectKeyFromObject(svc), &lb); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the operator has not created it yet
			}
			return err
		}
		want, changes := Announcements(svc, owners, lb.Status.Announcements, time.Now())
		if len(changes) == 0 && len(want) == len(lb.Status.Announcements) {
			continue
		}
		if err := w.apply(ctx, &lb, want); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, c := range changes {
			note := "%s is announced by node %s"
			args := []any{c.Address, c.To}
			if c.From != "" {
				note += " (was %s)"
				args = append(args, c.From)
			}
			w.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "AnnouncerChanged", "Announce", note, args...)
		}
	}
	return firstErr
}

func (w *Watcher) apply(ctx context.Context, lb *v1alpha1.LoadBalancer, want []v1alpha1.Announcement) error {
	if want == nil {
		want = []v1alpha1.Announcement{}
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "LoadBalancer",
		"metadata":   map[string]string{"name": lb.Name, "namespace": lb.Namespace},
		"status":     map[string]any{"announcements": want},
	})
	if err != nil {
		return err
	}
	if err := w.Client.Status().Patch(ctx, lb, client.RawPatch(types.ApplyPatchType, body),
		client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("publishing announcements of %s/%s: %w", lb.Namespace, lb.Name, err)
	}
	return nil
}
