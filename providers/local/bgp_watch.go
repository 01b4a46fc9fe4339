package local

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/kubeindex"
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
	sharers, keys, err := p.sharers(ctx, d.Key, in.Addresses, in.NodeLabels)
	if err != nil {
		return err
	}
	in.Sharers = sharers
	res := BGPStatus(in)
	st.BGP, st.NotReady, st.Warning = res.Status, res.NotReady, res.Warning
	p.resyncSharers(ctx, types.NamespacedName{Namespace: d.Key.Namespace, Name: d.Key.Name}, keys, res.Status)
	return nil
}

// sharers reads the other Services that hold one of addrs: their addresses
// from the allocation table (a sharer's Service status may not show a new
// address yet, which would leave it out until its next resync), then from
// the cache their labels and the nodes that may serve them, eligible ones
// (keys of eligible) holding a ready endpoint for externalTrafficPolicy
// Local (model.EndpointNodes, as the forwarders), every eligible one
// otherwise.
func (p *Provider) sharers(ctx context.Context, self providers.Key, addrs []netip.Addr, eligible map[string]map[string]string) ([]BGPSharer, []types.NamespacedName, error) {
	var keys []types.NamespacedName
	held := map[types.NamespacedName][]netip.Addr{}
	p.mu.Lock()
	for _, ip := range addrs {
		for _, k := range p.table.Holders(ip) {
			nn := types.NamespacedName{Namespace: k.Namespace, Name: k.Name}
			if (k.Namespace != self.Namespace || k.Name != self.Name) && !slices.Contains(keys, nn) {
				keys = append(keys, nn)
				held[nn] = slices.Clone(p.table.Get(k).Addresses)
			}
		}
	}
	p.mu.Unlock()
	if len(keys) == 0 {
		return nil, nil, nil
	}
	var all []string
	for n := range eligible {
		all = append(all, n)
	}
	slices.Sort(all)
	var out []BGPSharer
	var found []types.NamespacedName
	for _, nn := range keys {
		var svc corev1.Service
		if err := p.opts.Client.Get(ctx, nn, &svc, client.UnsafeDisableDeepCopy); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, nil, providers.Retry(fmt.Errorf("reading Service %s, which shares an address: %w", nn, err), 0)
		}
		sh := BGPSharer{Labels: svc.Labels, Addresses: held[nn], Serving: all}
		if model.LocalTraffic(&svc) {
			eps, err := kubeindex.EndpointSlicesOf(ctx, p.opts.Client, nn, client.UnsafeDisableDeepCopy)
			if err != nil {
				return nil, nil, providers.Retry(fmt.Errorf("listing EndpointSlices of %s, which shares an address: %w", nn, err), 0)
			}
			sh.Serving = nil
			for _, n := range model.EndpointNodes(eps)[nn.String()] {
				if _, ok := eligible[n]; ok {
					sh.Serving = append(sh.Serving, n)
				}
			}
		}
		out = append(out, sh)
		found = append(found, nn)
	}
	return out, found, nil
}

// resyncSharers has the Service controller ensure again the sharers (keys)
// whose last judgement of a shared address differs from self's, st: a
// change of one holder (its endpoints, its labels) changes what every holder
// reports. The judgements are kept in memory (p.shared), not read from the
// sharers' LoadBalancer records: the controller writes a record in a pass
// after the Ensure, which a new Ensure postpones, so two sharers comparing
// each other's records ensured each other again and again before either
// record was written. Once they agree, nothing is ensured again.
func (p *Provider) resyncSharers(ctx context.Context, self types.NamespacedName, keys []types.NamespacedName, st *lbv1.BGPStatus) {
	if len(keys) == 0 || st == nil {
		return
	}
	mine := map[string]lbv1.BGPAddressStatus{}
	for _, a := range st.Addresses {
		mine[a.Address] = a
	}
	var stale []types.NamespacedName
	p.mu.Lock()
	if p.shared == nil {
		p.shared = map[types.NamespacedName]map[string]lbv1.BGPAddressStatus{}
	}
	p.shared[self] = mine
	for _, nn := range keys {
		for _, a := range st.Addresses {
			b, ok := p.shared[nn][a.Address]
			if !ok || !sameAddressStatus(a, b) {
				stale = append(stale, nn)
				break
			}
		}
	}
	p.mu.Unlock()
	if len(stale) > 0 && p.opts.Reensure != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Ensuring again the Services that share an address advertised over BGP", "services", stale)
		p.opts.Reensure(stale)
	}
}

func sameAddressStatus(a, b lbv1.BGPAddressStatus) bool {
	return a.Address == b.Address && a.IPPool == b.IPPool && a.Announce == b.Announce &&
		slices.Equal(a.Peers, b.Peers) && slices.Equal(a.Nodes, b.Nodes)
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
	// A node's labels decide which BGPPeers it peers with (nodeSelector):
	// a relabelled node starts or stops advertising at once, so its
	// Services' status must not wait for the resync. Heartbeats and label
	// changes no selector sees change nothing here.
	handlers[&corev1.Node{}] = changes(func(o, n *corev1.Node) bool {
		if maps.Equal(o.Labels, n.Labels) {
			return false
		}
		var peers lbv1.BGPPeerList
		if err := w.Cache.List(ctx, &peers, client.UnsafeDisableDeepCopy); err != nil {
			return true
		}
		return PeerSelectionChanged(peers.Items, o.Labels, n.Labels)
	}, signal)
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

// PeerSelectionChanged reports whether a node relabelled from o to n is
// selected by a different set of the BGPPeers (their nodeSelectors).
func PeerSelectionChanged(peers []lbv1.BGPPeer, o, n map[string]string) bool {
	for i := range peers {
		sel := peers[i].Spec.NodeSelector
		if model.Selects(sel, o) != model.Selects(sel, n) {
			return true
		}
	}
	return false
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
