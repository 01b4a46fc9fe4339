package model

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// Selects reports whether a label selector matches set: a nil selector
// matches everything, an invalid one nothing.
func Selects(sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(set))
}

// SelectsPool reports whether a BGPAdvertisement selects pool: by name in
// ipPools, by ipPoolSelector, or because it has neither (every BGP pool).
func SelectsPool(adv *lbv1.BGPAdvertisementSpec, pool *lbv1.IPPool) bool {
	if len(adv.IPPools) == 0 && adv.IPPoolSelector == nil {
		return true
	}
	for _, name := range adv.IPPools {
		if name == pool.Name {
			return true
		}
	}
	return adv.IPPoolSelector != nil && Selects(adv.IPPoolSelector, pool.Labels)
}

// BGPAdvertisementsFor returns the BGPAdvertisements that apply to an
// address of pool held by svc: those that select the pool and whose
// serviceSelector matches svc. selected is false when no advertisement
// selects the pool at all: its addresses are then advertised as host routes
// to every peer. It is the one rule by which the forwarders plan their
// routes (bgp.Plan) and the operator reports who advertises an address.
func BGPAdvertisementsFor(pool *lbv1.IPPool, svc *corev1.Service, advs []lbv1.BGPAdvertisement) (applied []*lbv1.BGPAdvertisement, selected bool) {
	for i := range advs {
		if !SelectsPool(&advs[i].Spec, pool) {
			continue
		}
		selected = true
		if Selects(advs[i].Spec.ServiceSelector, svc.Labels) {
			applied = append(applied, &advs[i])
		}
	}
	return applied, selected
}

// AdvertisedToPeer reports whether a BGPAdvertisement sends its routes to
// the BGPPeer named peer (every peer when spec.peers is empty).
func AdvertisedToPeer(adv *lbv1.BGPAdvertisementSpec, peer string) bool {
	if len(adv.Peers) == 0 {
		return true
	}
	for _, p := range adv.Peers {
		if p == peer {
			return true
		}
	}
	return false
}
