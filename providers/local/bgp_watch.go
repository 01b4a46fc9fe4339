package local

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// RBAC of the operator's view of BGP mode: which nodes advertise an address.
// +kubebuilder:rbac:groups=lb.portico.dev,resources=bgppeers;bgpadvertisements,verbs=get;list;watch

// advertised fills st's BGP status from the BGPPeers' sessions, the
// BGPAdvertisements and the nodes' labels (all read from the cache), for
// addresses in IPPools announced by BGP. A cluster without such pools costs
// one cached List.
func (p *Provider) advertised(ctx context.Context, d *providers.LoadBalancer, st *providers.Status) error {
	var pools lbv1.IPPoolList
	// Read-only: BGPStatus copies what it keeps.
	if err := p.opts.Client.List(ctx, &pools, client.UnsafeDisableDeepCopy); err != nil {
		return providers.Retry(fmt.Errorf("listing IPPools: %w", err), 0)
	}
	in := BGPInputs{Labels: d.Labels, Pools: pools.Items}
	for _, ing := range st.Ingress {
		if ing.IP.IsValid() && poolOf(pools.Items, ing.IP) != nil {
			in.Addresses = append(in.Addresses, ing.IP)
		}
	}
	if len(in.Addresses) == 0 {
		return nil
	}
	var peers lbv1.BGPPeerList
	var advs lbv1.BGPAdvertisementList
	var nodes corev1.NodeList
	for _, l := range []client.ObjectList{&peers, &advs, &nodes} {
		if err := p.opts.Client.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return providers.Retry(fmt.Errorf("listing %T: %w", l, err), 0)
		}
	}
	in.Peers, in.Advertisements = peers.Items, advs.Items
	in.NodeLabels = make(map[string]map[string]string, len(nodes.Items))
	for i := range nodes.Items {
		if n := &nodes.Items[i]; model.EligibleNode(n) {
			in.NodeLabels[n.Name] = n.Labels
		}
	}
	for _, n := range d.Nodes {
		in.Serving = append(in.Serving, n.Name)
	}
	res := BGPStatus(in)
	st.BGP, st.NotReady, st.Warning = res.Status, res.NotReady, res.Warning
	return nil
}

// BGPWatch has the Service controller ensure local Services again when who
// advertises their addresses may have changed: a BGPPeer's spec or the
// state of its sessions (not its route counts), a BGPAdvertisement, an
// IPPool's spec. Changes within Window share one pass. It runs on the
// leader only (a manager.Runnable that needs leader election).
type BGPWatch struct {
	Cache cache.Cache
	// Reensure is the Service controller's hook.
	Reensure func([]types.NamespacedName)
	// Window coalesces bursts (every node reporting a session); default
	// 200ms.
	Window time.Duration
}

// Start watches until ctx ends.
func (w *BGPWatch) Start(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	handlers := map[client.Object]toolscache.ResourceEventHandler{
		&lbv1.BGPPeer{}: changes(func(o, n *lbv1.BGPPeer) bool {
			return !equality.Semantic.DeepEqual(o.Spec, n.Spec) || !slices.Equal(sessionStates(o), sessionStates(n))
		}, signal),
		&lbv1.BGPAdvertisement{}: changes(func(o, n *lbv1.BGPAdvertisement) bool {
			return !equality.Semantic.DeepEqual(o.Spec, n.Spec) || !equality.Semantic.DeepEqual(o.Labels, n.Labels)
		}, signal),
		&lbv1.IPPool{}: changes(func(o, n *lbv1.IPPool) bool {
			return !equality.Semantic.DeepEqual(o.Spec, n.Spec) || !equality.Semantic.DeepEqual(o.Labels, n.Labels)
		}, signal),
	}
	for obj, h := range handlers {
		inf, err := w.Cache.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	window := w.Window
	if window == 0 {
		window = 200 * time.Millisecond
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(window):
		}
		svcs, err := w.routed(ctx)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Finding the Services advertised over BGP; retrying")
			signal()
			continue
		}
		if len(svcs) > 0 {
			w.Reensure(svcs)
		}
	}
}

// routed returns the local Services that hold an address of an IPPool
// announced by BGP, or whose record still reports BGP status.
func (w *BGPWatch) routed(ctx context.Context) ([]types.NamespacedName, error) {
	var svcs corev1.ServiceList
	var recs lbv1.LoadBalancerList
	var pools lbv1.IPPoolList
	for _, l := range []client.ObjectList{&svcs, &recs, &pools} {
		if err := w.Cache.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	reported := map[types.NamespacedName]bool{}
	for i := range recs.Items {
		if recs.Items[i].Status.BGP != nil {
			reported[client.ObjectKeyFromObject(&recs.Items[i])] = true
		}
	}
	var out []types.NamespacedName
	for _, s := range model.OfClass(model.LocalClass, svcs.Items, recs.Items) {
		key := client.ObjectKeyFromObject(s)
		if reported[key] || slices.ContainsFunc(model.IngressIPs(s), func(ip netip.Addr) bool { return poolOf(pools.Items, ip) != nil }) {
			out = append(out, key)
		}
	}
	return out, nil
}

// sessionStates is what of a BGPPeer's sessions decides who advertises:
// which nodes are Established.
func sessionStates(p *lbv1.BGPPeer) []string {
	var out []string
	for _, s := range p.Status.Sessions {
		if s.State == StateEstablished {
			out = append(out, s.Node)
		}
	}
	slices.Sort(out)
	return out
}

// changes signals on creations and deletions after the initial list, and on
// updates that changed says matter.
func changes[T client.Object](changed func(o, n T) bool, signal func()) toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(_ any, initial bool) {
			if !initial {
				signal()
			}
		},
		UpdateFunc: func(o, n any) {
			ot, ok1 := o.(T)
			nt, ok2 := n.(T)
			if !ok1 || !ok2 || changed(ot, nt) {
				signal()
			}
		},
		DeleteFunc: func(any) { signal() },
	}
}
