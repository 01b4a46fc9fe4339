package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPPoolSpec lists the addresses the local backend may hand out.
type IPPoolSpec struct {
	// Addresses are CIDRs ("192.0.2.0/28", "2001:db8::/120") or inclusive
	// ranges ("192.0.2.10-192.0.2.20"), IPv4 or IPv6.
	// Entries may not include addresses no node may announce: unspecified,
	// loopback, link-local, multicast, broadcast, nor whole-address-space
	// prefixes. Overlaps between entries or with other pools, host bits in a
	// CIDR, reversed ranges and ranges that span a special block are reported
	// by the Valid condition.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="self.all(a, isCIDR(a) || isIP(a) || (a.split('-').size() == 2 && isIP(a.split('-')[0].trim()) && isIP(a.split('-')[1].trim())))",message="each address must be a CIDR (192.0.2.0/28), an IP, or a range of two IPs (192.0.2.10-192.0.2.20)"
	// +kubebuilder:validation:XValidation:rule="self.all(a, isCIDR(a) ? (cidr(a).masked().ip().isGlobalUnicast() && !cidr(a).containsIP('127.0.0.0') && !cidr(a).containsIP('169.254.0.0') && !cidr(a).containsIP('224.0.0.0') && !cidr(a).containsIP('255.255.255.255') && !cidr(a).containsIP('fe80::') && !cidr(a).containsIP('ff00::')) : isIP(a) ? ip(a).isGlobalUnicast() : (a.split('-').size() != 2 || !isIP(a.split('-')[0].trim()) || !isIP(a.split('-')[1].trim()) || (ip(a.split('-')[0].trim()).isGlobalUnicast() && ip(a.split('-')[1].trim()).isGlobalUnicast())))",message="addresses must not include unspecified (0.0.0.0, ::), loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4, ff00::/8) or broadcast (255.255.255.255) addresses, nor cover a whole address space (0.0.0.0/0, ::/0)"
	Addresses []string `json:"addresses"`
	// AutoAssign lets Services without a requested address draw from this
	// pool. Defaults to true.
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`
	// AvoidBuggyIPs skips addresses ending in .0 and .255.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`
	// ServiceSelector limits the pool to Services with matching labels.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// NamespaceSelector limits the pool to Services in matching namespaces.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// AllowSharingAcrossNamespaces lets Services in different namespaces
	// share an address of this pool when they carry the same
	// lb.portico.dev/allow-shared-ip key. By default a sharing key only
	// joins Services of one namespace.
	// +optional
	AllowSharingAcrossNamespaces bool `json:"allowSharingAcrossNamespaces,omitempty"`
	// Announce says how the pool's addresses reach clients: L2 (one node
	// answers ARP/NDP, the default), BGP (every serving node advertises a
	// route to its BGPPeers) or L2AndBGP.
	// +optional
	// +kubebuilder:default=L2
	// +kubebuilder:validation:Enum=L2;BGP;L2AndBGP
	Announce string `json:"announce,omitempty"`
}

// AnnouncedByL2 reports whether the pool's addresses are answered by ARP/NDP
// (an empty mode, as on objects stored before the field existed, is L2).
func (s *IPPoolSpec) AnnouncedByL2() bool {
	return s.Announce == "" || s.Announce == AnnounceL2 || s.Announce == AnnounceL2AndBGP
}

// AnnouncedByBGP reports whether the pool's addresses are advertised over BGP.
func (s *IPPoolSpec) AnnouncedByBGP() bool {
	return s.Announce == AnnounceBGP || s.Announce == AnnounceL2AndBGP
}

// IPPoolStatus reports the pool's usage.
type IPPoolStatus struct {
	// Total is the number of usable addresses (capped at 2^63-1 for IPv6).
	// The counts are written even when zero, so that kubectl get ippools
	// shows 0 for an unused pool rather than a blank.
	// +optional
	Total int64 `json:"total"`
	// Assigned is the number of addresses given to Services.
	// +optional
	Assigned int64 `json:"assigned"`
	// Free is Total minus Assigned.
	// +optional
	Free int64 `json:"free"`
	// Conditions describe the pool's validity and usage.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// IPPool is a set of addresses for Services of class lb.portico.dev/local.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ippool,categories=portico
// +kubebuilder:printcolumn:name="Announce",type=string,JSONPath=`.spec.announce`
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.total`
// +kubebuilder:printcolumn:name="Assigned",type=integer,JSONPath=`.status.assigned`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.status.free`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec,omitempty"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
//
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
