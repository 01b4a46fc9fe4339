package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/bfd"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/model"
)

// RBAC of portico-forwarder's BGP mode (config/rbac/forwarder_role.yaml).
// +kubebuilder:rbac:groups=lb.portico.dev,resources=ippools;bgppeers;bgpadvertisements,verbs=get;list;watch
// +kubebuilder:rbac:groups=lb.portico.dev,resources=bgppeers/status,verbs=get;patch
// +kubebuilder:rbac:groups="",namespace=portico-system,resources=secrets,verbs=get;list;watch

// FieldManagerPrefix + node name is the server-side apply field manager of
// a node's entry in BGPPeer status.sessions: each node owns its own entry.
const FieldManagerPrefix = "portico-forwarder-"

// StatusInterval is how often session state is compared with the status
// written.
var StatusInterval = time.Second

// Metrics of BGP mode (docs/bgp.md lists them).
var (
	metricSessionUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_bgp_session_up",
		Help: "1 while this node's BGP session with the peer is Established, else 0.",
	}, []string{"peer"})
	metricBFDUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_bgp_bfd_up",
		Help: "1 while this node's BFD session with the peer is Up, else 0 (only for peers with BFD).",
	}, []string{"peer"})
	metricAdvertised = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_bgp_advertised_routes",
		Help: "Prefixes this node advertises to the peer over an Established session.",
	}, []string{"peer"})
)

// Collectors returns BGP mode's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{metricSessionUp, metricAdvertised, metricBFDUp}
}

// Recorder emits Events; the forwarder's eventrec.Recorder (like
// controller-runtime's manager.GetEventRecorder) satisfies it.
type Recorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// Watcher feeds the Speaker from the cluster and writes each session's state
// into its BGPPeer's status. It is a manager.Runnable.
type Watcher struct {
	Self string
	// Namespace holds the password Secrets; Cache must watch Secrets
	// there (only there).
	Namespace string
	Cache     cache.Cache
	// Client writes BGPPeer status; reads go through Cache.
	Client   client.Client
	Recorder Recorder
	Speaker  *Speaker

	// plans are the peers' plans without routes (publish reads their
	// settings and errors, under plansMu: it runs in its own goroutine);
	// inc holds the routes.
	plansMu sync.Mutex
	plans   map[string]PeerPlan
	written map[string]lbv1.BGPSession
	inc     *Incremental

	kick chan struct{}
	mu   sync.Mutex
	full bool
	// dirty: Service key -> when its first unsynced change arrived.
	dirty map[string]time.Time
}

// Start runs until ctx ends, then closes the sessions (withdrawing their
// routes unless the peer has graceful restart).
func (w *Watcher) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("bgp")
	w.kick = make(chan struct{}, 1)
	for _, h := range []struct {
		obj     client.Object
		handler toolscache.ResourceEventHandler
	}{
		{&corev1.Service{}, w.changes(serviceKey)},
		// A Service's record has the Service's namespace and name.
		{&lbv1.LoadBalancer{}, w.changes(serviceKey)},
		{&discoveryv1.EndpointSlice{}, w.changes(sliceKey)},
		{&corev1.Node{}, w.nodeChanges()},
		{&lbv1.IPPool{}, w.specChanges()},
		{&lbv1.BGPPeer{}, w.specChanges()},
		{&lbv1.BGPAdvertisement{}, w.specChanges()},
		{&corev1.Secret{}, w.changes(func(client.Object) string { return replanAll })},
	} {
		inf, err := w.Cache.GetInformer(ctx, h.obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", h.obj, err)
		}
		if _, err := inf.AddEventHandler(h.handler); err != nil {
			return fmt.Errorf("watching %T: %w", h.obj, err)
		}
	}
	if !w.Cache.WaitForCacheSync(ctx) {
		return fmt.Errorf("cache did not sync")
	}
	// BFD runs beside the sessions; on shutdown its sessions say AdminDown
	// after the BGP sessions have closed.
	bfdCtx, stopBFD := context.WithCancel(context.Background())
	bfdDone := make(chan struct{})
	go func() {
		defer close(bfdDone)
		if err := w.Speaker.RunBFD(bfdCtx); err != nil {
			log.Error(err, "BFD stopped")
		}
	}()
	defer func() {
		stopBFD()
		<-bfdDone
	}()
	defer func() {
		// The manager's context is done: close with a context of our own so
		// withdrawals still go out.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.Speaker.Close(cctx)
	}()
	// Status is written on its own tick in its own goroutine, never in the
	// loop that hands routes to GoBGP: a write to the apiserver (tens to
	// hundreds of milliseconds under load, and during a burst the
	// advertised count changes every tick) must not hold up the next
	// routes.
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		status := time.NewTicker(StatusInterval)
		defer status.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-status.C:
				if err := w.publish(ctx); err != nil {
					log.Error(err, "Writing BGP session status; retrying")
				}
			}
		}
	}()
	defer func() { <-statusDone }()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	w.mark(replanAll)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
			if err := w.sync(ctx); err != nil {
				log.Error(err, "Applying BGP advertisements; retrying")
				w.markFull()
				retry.Reset(time.Second)
			}
		case <-retry.C:
			w.mark(replanAll)
		}
	}
}

// replanAll is the key of a change that may concern every Service: this
// node, an IPPool, BGPPeer, BGPAdvertisement or Secret.
const replanAll = "\x00all"

func serviceKey(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }

func sliceKey(o client.Object) string {
	if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
		return o.GetNamespace() + "/" + name
	}
	return ""
}

// nodeKey: Plan reads only this node's Node.
func (w *Watcher) nodeKey(o client.Object) string {
	if o.GetName() == w.Self {
		return replanAll
	}
	return ""
}

// nodeChanges replans everything when this node's Node changes what Plan
// reads of it: its labels (BGPPeer nodeSelectors) and whether it is eligible
// (model.EligibleNode). A heartbeat, or any other status write, does not
// replan.
func (w *Watcher) nodeChanges() toolscache.ResourceEventHandler {
	self := w.changes(w.nodeKey)
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { self.OnAdd(obj, false) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if ok1 && ok2 && maps.Equal(o.Labels, n.Labels) && model.EligibleNode(o) == model.EligibleNode(n) {
				return
			}
			self.OnUpdate(oldObj, newObj)
		},
		DeleteFunc: self.OnDelete,
	}
}

// changes returns an event handler that marks the Service key(obj) names
// ("" for none) to be replanned.
func (w *Watcher) changes(key func(client.Object) string) toolscache.ResourceEventHandler {
	f := func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if o, ok := obj.(client.Object); ok {
			if k := key(o); k != "" {
				w.mark(k)
			}
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { f(obj) },
		// Both: an EndpointSlice can change the Service it names.
		UpdateFunc: func(oldObj, obj any) { f(oldObj); f(obj) },
		DeleteFunc: f,
	}
}

// specChanges marks everything to be replanned when an object Plan reads
// by spec, name and labels changes, but not on its status writes (the
// forwarders write BGPPeer status, the operator IPPool status, often).
func (w *Watcher) specChanges() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.mark(replanAll) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(client.Object)
			n, ok2 := newObj.(client.Object)
			if ok1 && ok2 && o.GetGeneration() == n.GetGeneration() && o.GetGeneration() != 0 &&
				maps.Equal(o.GetLabels(), n.GetLabels()) {
				return
			}
			w.mark(replanAll)
		},
		DeleteFunc: func(any) { w.mark(replanAll) },
	}
}

// mark queues a Service key (or replanAll) and wakes the loop. Changes that
// arrive while a sync runs are taken together by the next one: under a burst
// they coalesce, with no delay when events are few.
func (w *Watcher) mark(key string) {
	w.mu.Lock()
	if key == replanAll {
		w.full = true
	} else {
		if w.dirty == nil {
			w.dirty = map[string]time.Time{}
		}
		if _, ok := w.dirty[key]; !ok {
			w.dirty[key] = time.Now()
		}
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watcher) markFull() {
	w.mu.Lock()
	w.full = true
	w.mu.Unlock()
}

// sync replans what changed: everything after a change of the shared inputs
// (or an error), else only the Services marked, whose changed prefixes alone
// go to the sessions.
func (w *Watcher) sync(ctx context.Context) error {
	w.mu.Lock()
	full, dirty := w.full || w.inc == nil, w.dirty
	w.full, w.dirty = false, nil
	w.mu.Unlock()
	if full {
		in, err := w.inputs(ctx)
		if err != nil {
			return err
		}
		if w.inc == nil {
			w.inc = &Incremental{}
		}
		w.inc.Reset(in)
		w.plansMu.Lock()
		w.plans = w.inc.Peers()
		w.plansMu.Unlock()
		return w.Speaker.Apply(ctx, w.inc.Plans())
	}
	delta := Delta{}
	// queued: when the change behind each prefix of delta arrived (for
	// the trace below).
	queued := map[netip.Prefix]time.Time{}
	for key, since := range dirty {
		svc, eps, err := w.service(ctx, key)
		if err != nil {
			return err
		}
		for peer, ps := range w.inc.Update(key, svc, eps) {
			if delta[peer] == nil {
				delta[peer] = map[netip.Prefix]*Route{}
			}
			maps.Copy(delta[peer], ps)
			for p := range ps {
				queued[p] = since
			}
		}
	}
	planned := time.Now()
	if err := w.Speaker.Patch(ctx, delta); err != nil {
		return err
	}
	if log := logr.FromContextOrDiscard(ctx).WithName("bgp").V(4); log.Enabled() && len(queued) > 0 {
		traceRoutes(log, queued, planned, time.Now())
	}
	return nil
}

// traceRoutes logs, for each prefix just handed to GoBGP, when the change
// behind it arrived from the informers, when the sync had planned it and
// when GoBGP took it (Unix microseconds: bench-bgp lays these beside the
// router's times to split an announcement's latency by stage).
func traceRoutes(log logr.Logger, queued map[netip.Prefix]time.Time, planned, patched time.Time) {
	routes := make([]string, 0, len(queued))
	for _, p := range slices.SortedFunc(maps.Keys(queued), comparePrefix) {
		routes = append(routes, fmt.Sprintf("%s@%d", p, queued[p].UnixMicro()))
	}
	log.Info("Routes handed to GoBGP", "plannedUnixMicro", planned.UnixMicro(), "patchedUnixMicro", patched.UnixMicro(), "routes", routes)
}

// service reads one Service's part of Plan's inputs from the cache: the
// Service if the operator serves it through the local class, and for
// externalTrafficPolicy Local its EndpointSlices (Plan reads no others).
func (w *Watcher) service(ctx context.Context, key string) (*corev1.Service, []discoveryv1.EndpointSlice, error) {
	ns, name, _ := strings.Cut(key, "/")
	nn := client.ObjectKey{Namespace: ns, Name: name}
	var svc corev1.Service
	if err := w.Cache.Get(ctx, nn, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("reading Service %s: %w", key, err)
	}
	var rec lbv1.LoadBalancer
	if err := w.Cache.Get(ctx, nn, &rec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("reading LoadBalancer %s: %w", key, err)
	}
	if model.Recorded(&svc, &rec) != model.LocalClass {
		return nil, nil, nil
	}
	if !model.LocalTraffic(&svc) {
		return &svc, nil, nil
	}
	eps, err := kubeindex.EndpointSlicesOf(ctx, w.Cache, nn, client.UnsafeDisableDeepCopy)
	if err != nil {
		return nil, nil, fmt.Errorf("listing EndpointSlices of %s: %w", key, err)
	}
	return &svc, eps, nil
}

// inputs reads Plan's inputs from the cache.
func (w *Watcher) inputs(ctx context.Context) (Inputs, error) {
	var in Inputs
	var node corev1.Node
	if err := w.Cache.Get(ctx, client.ObjectKey{Name: w.Self}, &node); err != nil {
		if apierrors.IsNotFound(err) {
			return in, nil // no Node: no sessions
		}
		return in, err
	}
	in.Node = &node
	var svcs corev1.ServiceList
	var recs lbv1.LoadBalancerList
	var eps discoveryv1.EndpointSliceList
	var pools lbv1.IPPoolList
	var peers lbv1.BGPPeerList
	var advs lbv1.BGPAdvertisementList
	// Plan only reads its inputs: the cache's objects are listed without a
	// deep copy. With a copy, every event cost a copy of every Service,
	// record and EndpointSlice (hundreds of milliseconds and dozens of
	// garbage collections a second at 1,000 Services, which delayed both the
	// routes and the BFD packets).
	for _, l := range []client.ObjectList{&svcs, &recs, &eps, &pools, &peers, &advs} {
		if err := w.Cache.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return in, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	var secrets corev1.SecretList
	if err := w.Cache.List(ctx, &secrets, client.InNamespace(w.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return in, fmt.Errorf("listing Secrets: %w", err)
	}
	in.Services = model.OfClass(model.LocalClass, svcs.Items, recs.Items)
	in.EndpointSlices, in.Pools, in.Peers, in.Advertisements = eps.Items, pools.Items, peers.Items, advs.Items
	in.Secrets = map[string]*corev1.Secret{}
	for i := range secrets.Items {
		in.Secrets[secrets.Items[i].Name] = &secrets.Items[i]
	}
	return in, nil
}

// Session is the status entry of this node for a peer given its plan and
// the speaker's view of the session (ok false: no session open). It is pure;
// LastUpdate is left to the writer.
func Session(node string, pp PeerPlan, st SessionState, ok bool) lbv1.BGPSession {
	s := lbv1.BGPSession{Node: node, State: "Idle"}
	switch {
	case pp.Error != "":
		s.State, s.LastError = StateDisabled, pp.Error
	case ok:
		s.State, s.Advertised, s.LastError, s.BFD = st.State, int32(st.Advertised), st.LastError, st.BFD
		if st.State == StateEstablished && !st.EstablishedSince.IsZero() {
			s.EstablishedSince = &metav1.Time{Time: st.EstablishedSince.Truncate(time.Second)}
			s.LastError = ""
		}
	}
	return s
}

func sameSession(a, b lbv1.BGPSession) bool {
	a.LastUpdate, b.LastUpdate = metav1.Time{}, metav1.Time{}
	ae, be := a.EstablishedSince, b.EstablishedSince
	a.EstablishedSince, b.EstablishedSince = nil, nil
	return a == b && (ae == nil) == (be == nil) && (ae == nil || ae.Equal(be))
}

// publish writes this node's entry of every planned peer whose session
// changed, with an Event when it comes up, goes down or cannot be opened,
// and updates the metrics.
func (w *Watcher) publish(ctx context.Context) error {
	if w.written == nil {
		w.written = map[string]lbv1.BGPSession{}
	}
	states := w.Speaker.Sessions(ctx)
	w.plansMu.Lock()
	plans := w.plans
	w.plansMu.Unlock()
	var firstErr error
	for name, pp := range plans {
		st, ok := states[name]
		s := Session(w.Self, pp, st, ok)
		up := 0.0
		if s.State == StateEstablished {
			up = 1
		}
		metricSessionUp.WithLabelValues(name).Set(up)
		metricAdvertised.WithLabelValues(name).Set(float64(s.Advertised))
		if s.BFD != "" {
			metricBFDUp.WithLabelValues(name).Set(map[bool]float64{true: 1}[s.BFD == bfd.Up.String()])
		} else {
			metricBFDUp.DeleteLabelValues(name)
		}
		prev, had := w.written[name]
		if had && sameSession(prev, s) {
			continue
		}
		s.LastUpdate = metav1.Now()
		if err := w.apply(ctx, name, s); err != nil {
			if !apierrors.IsNotFound(err) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		w.written[name] = s
		w.event(name, prev, had, s)
	}
	for name := range w.written {
		if _, ok := plans[name]; !ok {
			delete(w.written, name)
			metricSessionUp.DeleteLabelValues(name)
			metricAdvertised.DeleteLabelValues(name)
			metricBFDUp.DeleteLabelValues(name)
		}
	}
	return firstErr
}

func (w *Watcher) event(peer string, prev lbv1.BGPSession, had bool, s lbv1.BGPSession) {
	ref := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	ref.SetGroupVersionKind(lbv1.GroupVersion.WithKind("BGPPeer"))
	wasUp := had && prev.State == StateEstablished
	switch {
	case s.State == StateEstablished && !wasUp:
		w.Recorder.Eventf(ref, nil, corev1.EventTypeNormal, "SessionEstablished", "Peer", "Node %s: session established, %d prefixes advertised", w.Self, s.Advertised)
	case s.State == StateDisabled && (!had || prev.LastError != s.LastError):
		w.Recorder.Eventf(ref, nil, corev1.EventTypeWarning, "SessionDisabled", "Peer", "Node %s does not peer: %s", w.Self, s.LastError)
	case s.State != StateEstablished && wasUp:
		w.Recorder.Eventf(ref, nil, corev1.EventTypeWarning, "SessionDown", "Peer", "Node %s: session is %s %s", w.Self, s.State, s.LastError)
	}
}

// apply writes this node's entry by server-side apply, as its own field
// manager, so nodes never overwrite each other's entries.
func (w *Watcher) apply(ctx context.Context, peer string, s lbv1.BGPSession) error {
	body, err := json.Marshal(map[string]any{
		"apiVersion": lbv1.GroupVersion.String(),
		"kind":       "BGPPeer",
		"metadata":   map[string]string{"name": peer},
		"status":     map[string]any{"sessions": []lbv1.BGPSession{s}},
	})
	if err != nil {
		return err
	}
	obj := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	if err := w.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body),
		client.FieldOwner(FieldManagerPrefix+w.Self), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing session of %s to BGPPeer %s: %w", w.Self, peer, err)
	}
	return nil
}
