package local

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
)

// IPPool condition types.
const (
	// IPPoolValid is False when the pool's addresses do not parse or overlap
	// another pool; the local backend skips an invalid pool.
	IPPoolValid = "Valid"
	// IPPoolExhausted is True when every address is assigned.
	IPPoolExhausted = "Exhausted"
	// IPPoolAdvertised, for a pool announced by BGP or L2AndBGP, is False
	// when no BGPPeer receives its addresses (reason NoPeer).
	IPPoolAdvertised = "Advertised"
)

// PoolAddresses is portico_ippool_addresses{ippool, state}: each pool's
// total, assigned and free addresses, for alerts on a pool nearly exhausted.
var PoolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "portico_ippool_addresses",
	Help: "Addresses of an IPPool by state: total, assigned, free.",
}, []string{"ippool", "state"})

var registerPoolMetrics sync.Once

// RBAC of the IPPool controller (BGPPeers and BGPAdvertisements: see
// bgp_watch.go).
// +kubebuilder:rbac:groups=lb.portico.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=lb.portico.dev,resources=ippools/status,verbs=get;update;patch

// IPPoolReconciler keeps IPPool status (total, assigned and free counts and
// the Valid and Exhausted conditions) in step with the pools and the
// addresses held by the Services the operator serves through
// lb.portico.dev/local (model.OfClass: their records say so, the default
// class included).
type IPPoolReconciler struct {
	Client client.Client
	// Recorder, when set, receives an Event when a condition turns bad.
	Recorder events.EventRecorder
	// OnStranded, when set, is called with the local Services whose status
	// lists an address that no valid IPPool contains any more (a pool was
	// deleted or its addresses changed), so that the Service controller
	// ensures them again: the local backend then releases the address and
	// the Service's status drops it.
	OnStranded func(services []types.NamespacedName)
}

// SetupWithManager watches IPPools (any change may create or clear an
// overlap elsewhere, so every pool is re-evaluated), LoadBalancer Services
// and the local backend's records.
func (r *IPPoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	registerPoolMetrics.Do(func() { ctrlmetrics.Registry.MustRegister(PoolAddresses) })
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return r.allPools(ctx)
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("ippool").
		For(&lbv1.IPPool{}).
		Watches(&lbv1.IPPool{}, all).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			if svc, ok := o.(*corev1.Service); !ok || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				return nil
			}
			return r.allPools(ctx)
		})).
		// Who receives a pool's routes; session state does not matter here.
		Watches(&lbv1.BGPPeer{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&lbv1.BGPAdvertisement{}, all).
		Watches(&lbv1.LoadBalancer{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			if rec, ok := o.(*lbv1.LoadBalancer); !ok || rec.Spec.Class != model.LocalClass {
				return nil
			}
			return r.allPools(ctx)
		})).
		Complete(r)
}

func (r *IPPoolReconciler) allPools(ctx context.Context) []reconcile.Request {
	var pools lbv1.IPPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(pools.Items))
	for _, p := range pools.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: p.Name}})
	}
	return out
}

// Reconcile recomputes one pool's status and writes it when it changed.
func (r *IPPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pools lbv1.IPPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing IPPools: %w", err)
	}
	var svcs corev1.ServiceList
	if err := r.Client.List(ctx, &svcs); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing Services: %w", err)
	}
	var recs lbv1.LoadBalancerList
	if err := r.Client.List(ctx, &recs); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing LoadBalancers: %w", err)
	}
	served := model.OfClass(model.LocalClass, svcs.Items, recs.Items)
	// A deleted pool reconciles too (the last pool's deletion has no other
	// pool to trigger), so stranded Services are found either way.
	if stranded := Stranded(pools.Items, served); len(stranded) > 0 && r.OnStranded != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Services hold addresses that left every IPPool", "services", stranded)
		r.OnStranded(stranded)
	}
	var pool lbv1.IPPool
	if err := r.Client.Get(ctx, req.NamespacedName, &pool); err != nil {
		if apierrors.IsNotFound(err) {
			PoolAddresses.DeletePartialMatch(prometheus.Labels{"ippool": req.Name})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	status := IPPoolStatus(&pool, pools.Items, served)
	var peers lbv1.BGPPeerList
	var advs lbv1.BGPAdvertisementList
	for _, l := range []client.ObjectList{&peers, &advs} {
		if err := r.Client.List(ctx, l); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	prev := meta.FindStatusCondition(pool.Status.Conditions, IPPoolAdvertised)
	if c := AdvertisedCondition(&pool, peers.Items, advs.Items); c == nil {
		meta.RemoveStatusCondition(&status.Conditions, IPPoolAdvertised)
	} else {
		meta.SetStatusCondition(&status.Conditions, *c)
		if c.Status == metav1.ConditionFalse && (prev == nil || prev.Status != c.Status || prev.Message != c.Message) && r.Recorder != nil {
			r.Recorder.Eventf(&pool, nil, corev1.EventTypeWarning, c.Reason, "Advertise", "%s", c.Message)
		}
	}
	PoolAddresses.WithLabelValues(pool.Name, "total").Set(float64(status.Total))
	PoolAddresses.WithLabelValues(pool.Name, "assigned").Set(float64(status.Assigned))
	PoolAddresses.WithLabelValues(pool.Name, "free").Set(float64(status.Free))
	if equality.Semantic.DeepEqual(status, pool.Status) {
		return ctrl.Result{}, nil
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Updating IPPool status", "total", status.Total, "assigned", status.Assigned)
	pool.Status = status
	if err := r.Client.Status().Update(ctx, &pool); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // deleted meanwhile
		}
		return ctrl.Result{}, fmt.Errorf("updating IPPool %s status: %w", pool.Name, err)
	}
	return ctrl.Result{}, nil
}

// IPPoolStatus computes pool's status from every pool and the Services of
// the local class (model.OfClass). It is pure; conditions keep their
// transition times when their status holds.
func IPPoolStatus(pool *lbv1.IPPool, all []lbv1.IPPool, svcs []*corev1.Service) lbv1.IPPoolStatus {
	st := lbv1.IPPoolStatus{Conditions: append([]metav1.Condition(nil), pool.Status.Conditions...), ObservedGeneration: pool.Generation}
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: pool.Generation})
	}
	parsed, err := PoolFromAPI(pool)
	if err != nil {
		set(IPPoolValid, metav1.ConditionFalse, "InvalidAddresses", err.Error())
		meta.RemoveStatusCondition(&st.Conditions, IPPoolExhausted)
		return st
	}
	if overlaps := overlapping(pool.Name, parsed.Ranges, all); len(overlaps) > 0 {
		set(IPPoolValid, metav1.ConditionFalse, "Overlap", "addresses overlap "+strings.Join(overlaps, "; ")+"; an address in two pools follows both pools' selectors")
	} else {
		set(IPPoolValid, metav1.ConditionTrue, "Valid", fmt.Sprintf("%d address ranges", len(parsed.Ranges)))
	}
	st.Total = TotalSize(parsed.Ranges, parsed.AvoidBuggy)
	used := map[netip.Addr]bool{}
	for _, svc := range svcs {
		for _, ip := range model.IngressIPs(svc) {
			if parsed.Contains(ip) && !(parsed.AvoidBuggy && Buggy(ip)) {
				used[ip] = true
			}
		}
	}
	st.Assigned = int64(len(used))
	st.Free = max(st.Total-st.Assigned, 0)
	if st.Free == 0 {
		set(IPPoolExhausted, metav1.ConditionTrue, "NoFreeAddresses", fmt.Sprintf("all %d addresses are assigned; new Services of class lb.portico.dev/local stay pending", st.Total))
	} else {
		set(IPPoolExhausted, metav1.ConditionFalse, "AddressesFree", fmt.Sprintf("%d of %d addresses free", st.Free, st.Total))
	}
	return st
}

// Stranded returns the local Services (sorted) whose status lists an
// address that no valid IPPool contains. It is pure.
func Stranded(pools []lbv1.IPPool, svcs []*corev1.Service) []types.NamespacedName {
	var valid []Pool
	for i := range pools {
		if p, err := PoolFromAPI(&pools[i]); err == nil {
			valid = append(valid, p)
		}
	}
	var out []types.NamespacedName
	for _, svc := range svcs {
		for _, ip := range model.IngressIPs(svc) {
			if slices.ContainsFunc(valid, func(p Pool) bool { return p.Contains(ip) }) {
				continue
			}
			out = append(out, types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
			break
		}
	}
	slices.SortFunc(out, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// overlapping describes the other pools whose addresses overlap ranges.
func overlapping(self string, ranges []Range, all []lbv1.IPPool) []string {
	var out []string
	for i := range all {
		other := &all[i]
		if other.Name == self {
			continue
		}
		theirs, err := ParseRanges(other.Spec.Addresses)
		if err != nil {
			continue
		}
		for _, a := range ranges {
			for _, b := range theirs {
				if a.Overlaps(b) {
					out = append(out, fmt.Sprintf("IPPool %s (%s and %s)", other.Name, a, b))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// AdvertisedCondition is the Advertised condition of a pool announced by BGP
// or L2AndBGP (nil for an L2 pool): False (NoPeer) when no BGPPeer receives
// the addresses of one of the pool's address families. A pool no
// BGPAdvertisement selects goes to every peer (bgp.Plan); one that some
// select goes to the peers they name, all peers when they name none. A
// BGPAdvertisement's serviceSelector narrows it per Service and is not
// judged here. It is pure.
func AdvertisedCondition(pool *lbv1.IPPool, peers []lbv1.BGPPeer, advs []lbv1.BGPAdvertisement) *metav1.Condition {
	if !pool.Spec.AnnouncedByBGP() {
		return nil
	}
	c := &metav1.Condition{Type: IPPoolAdvertised, Status: metav1.ConditionFalse, Reason: "NoPeer", ObservedGeneration: pool.Generation}
	ranges, err := ParseRanges(pool.Spec.Addresses)
	if err != nil {
		c.Reason, c.Message = "InvalidAddresses", "the pool's addresses do not parse (see the Valid condition); nothing is advertised"
		return c
	}
	var selecting, named, missing []string
	everyPeer := true // no advertisement selects the pool
	for i := range advs {
		if !model.SelectsPool(&advs[i].Spec, pool) {
			continue
		}
		if len(selecting) == 0 {
			everyPeer = false
		}
		selecting = append(selecting, advs[i].Name)
		if len(advs[i].Spec.Peers) == 0 {
			everyPeer = true // this one sends to every peer
		}
		named = append(named, advs[i].Spec.Peers...)
	}
	var receiving []lbv1.BGPPeer
	for _, p := range peers {
		if everyPeer || slices.Contains(named, p.Name) {
			receiving = append(receiving, p)
		}
	}
	for _, n := range named {
		if !slices.ContainsFunc(peers, func(p lbv1.BGPPeer) bool { return p.Name == n }) && !slices.Contains(missing, n) {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	var names []string
	has := map[bool]bool{} // is4 -> a receiving peer of that family
	for _, p := range receiving {
		names = append(names, p.Name)
		if a, err := netip.ParseAddr(p.Spec.Address); err == nil {
			has[a.Unmap().Is4()] = true
		}
	}
	sort.Strings(names)
	switch {
	case len(peers) == 0 && len(missing) == 0:
		c.Message = fmt.Sprintf("the pool is announced by %s but there is no BGPPeer: its addresses reach no router", pool.Spec.Announce)
		return c
	case len(receiving) == 0:
		c.Message = fmt.Sprintf("the BGPAdvertisements that select the pool (%s) name only BGPPeers that do not exist (%s): its addresses reach no router",
			strings.Join(selecting, ", "), strings.Join(missing, ", "))
		return c
	}
	for _, r := range ranges {
		if !has[r.Is4()] {
			family := map[bool]string{true: "IPv4", false: "IPv6"}[r.Is4()]
			c.Message = fmt.Sprintf("no %s BGPPeer receives the pool's %s addresses (%s); it is advertised to %s", family, family, r, strings.Join(names, ", "))
			return c
		}
	}
	c.Status, c.Reason = metav1.ConditionTrue, "Advertised"
	c.Message = "advertised to BGPPeer " + strings.Join(names, ", ")
	if len(missing) > 0 {
		c.Message += fmt.Sprintf("; BGPAdvertisements name BGPPeer %s, which does not exist", strings.Join(missing, ", "))
	}
	return c
}
