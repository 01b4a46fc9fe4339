package cluster

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// Change is one address whose announcing node changed.
type Change struct {
	Address  string
	From, To string
}

// Publisher reports whether self writes svc's announcements: the node that
// announces the Service's first address does, so each LoadBalancer has one
// writer.
func Publisher(svc *corev1.Service, self string, mine []netip.Addr) bool {
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(ing.IP)
		if err != nil {
			continue
		}
		for _, m := range mine {
			if m == ip {
				return true
			}
		}
		return false
	}
	return false
}

// Announcements computes the announcements of svc from owners, keeping
// Since for unchanged entries, and lists what changed against current.
func Announcements(svc *corev1.Service, owners map[netip.Addr]string, current []v1alpha1.Announcement, now time.Time) ([]v1alpha1.Announcement, []Change) {
	have := map[string]v1alpha1.Announcement{}
	for _, a := range current {
		have[a.Address] = a
	}
	var want []v1alpha1.Announcement
	var changes []Change
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(ing.IP)
		if err != nil {
			continue
		}
		node := owners[ip]
		if node == "" {
			continue
		}
		old, ok := have[ip.String()]
		if ok && old.Node == node {
			want = append(want, old)
			continue
		}
		since := metav1.NewTime(now.Truncate(time.Second))
		want = append(want, v1alpha1.Announcement{Address: ip.String(), Node: node, Since: &since})
		changes = append(changes, Change{Address: ip.String(), From: old.Node, To: node})
	}
	return want, changes
}
