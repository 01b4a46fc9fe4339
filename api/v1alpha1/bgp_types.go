package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Announcement modes of an IPPool (spec.announce).
const (
	// AnnounceL2 answers ARP/NDP for the pool's addresses from one node.
	AnnounceL2 = "L2"
	// AnnounceBGP advertises host routes for the pool's addresses to the
	// BGPPeers of every serving node.
	AnnounceBGP = "BGP"
	// AnnounceL2AndBGP does both.
	AnnounceL2AndBGP = "L2AndBGP"
)

// SecretKeyRef names a key of a Secret in the forwarders' namespace.
type SecretKeyRef struct {
	// Name of the Secret, in the namespace the forwarders run in
	// (portico-system by default).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret's data. Defaults to "password".
	// +optional
	// +kubebuilder:default=password
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// BGPPeerSpec is a router the forwarders of the selected nodes open a BGP
// session with.
//
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !has(self.holdTime) || duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be below holdTime"
type BGPPeerSpec struct {
	// Address of the router, IPv4 or IPv6.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="address must be an IP address"
	Address string `json:"address"`
	// Port of the router's BGP listener. Defaults to 179.
	// +optional
	// +kubebuilder:default=179
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
	// PeerASN is the router's autonomous system number.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN int64 `json:"peerASN"`
	// MyASN is the nodes' autonomous system number; equal to PeerASN for
	// iBGP.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	MyASN int64 `json:"myASN"`
	// NodeSelector picks the nodes that peer with this router; all
	// nodes when empty.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// PasswordSecret holds the TCP MD5 (RFC 2385) password. A missing
	// Secret or key keeps the session down and is reported in status.
	// +optional
	PasswordSecret *SecretKeyRef `json:"passwordSecret,omitempty"`
	// HoldTime is the BGP hold time offered: 0 (no keepalives) or at
	// least 3s (RFC 4271 4.2). Defaults to 90s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || duration(self) >= duration('3s')",message="holdTime must be 0 or at least 3s"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('65535s')",message="holdTime must be at most 65535s"
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the interval between keepalives. Defaults to a
	// third of HoldTime.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="keepaliveTime must be at least 1s"
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// EBGPMultiHop allows an eBGP router more than one hop away (TTL 255).
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`
	// GracefulRestart (RFC 4724) asks the router to keep this node's
	// routes through a forwarder restart for RestartTime. A forwarder
	// that stops then leaves its routes to the router's stale timer
	// instead of withdrawing them.
	// +optional
	GracefulRestart bool `json:"gracefulRestart,omitempty"`
	// RestartTime is the graceful restart time announced. Defaults to
	// 120s.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('4095s')",message="restartTime must be between 1s and 4095s"
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
	// BFD runs Bidirectional Forwarding Detection (RFC 5880 asynchronous
	// mode, single hop, IPv4) with the router, so it withdraws a dead
	// node's routes after DetectMultiplier x the interval rather than the
	// hold time. The router must run BFD with the node too.
	// +optional
	BFD *BFDSettings `json:"bfd,omitempty"`
}

// BFDSettings are a BFD session's timers.
type BFDSettings struct {
	// ReceiveInterval is the fastest rate at which the node accepts BFD
	// packets. Defaults to 300ms.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('60s')",message="receiveInterval must be between 10ms and 60s"
	ReceiveInterval *metav1.Duration `json:"receiveInterval,omitempty"`
	// TransmitInterval is how often the node wants to send. Defaults to
	// 300ms.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('60s')",message="transmitInterval must be between 10ms and 60s"
	TransmitInterval *metav1.Duration `json:"transmitInterval,omitempty"`
	// DetectMultiplier is how many intervals without a packet make the
	// session down. Defaults to 3.
	// +optional
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	DetectMultiplier *int32 `json:"detectMultiplier,omitempty"`
}

// BGPSession is one node's session with the peer, written by that node's
// forwarder.
type BGPSession struct {
	// Node runs the session.
	Node string `json:"node"`
	// State is the BGP finite state machine state (Idle, Connect,
	// Active, OpenSent, OpenConfirm, Established), or Disabled when the
	// forwarder does not open the session (see LastError).
	State string `json:"state"`
	// EstablishedSince is when the session last became Established.
	// +optional
	EstablishedSince *metav1.Time `json:"establishedSince,omitempty"`
	// Advertised is the number of prefixes advertised to the peer.
	// +optional
	Advertised int32 `json:"advertised"`
	// BFD is the BFD session's state (Up, Down, Init, AdminDown) when the
	// peer asks for BFD.
	// +optional
	BFD string `json:"bfd,omitempty"`
	// LastError says why the session is down or not opened, if known.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// LastUpdate is when the forwarder last changed this entry.
	// +optional
	LastUpdate metav1.Time `json:"lastUpdate,omitempty"`
}

// BGPPeerStatus reports each node's session with the peer.
type BGPPeerStatus struct {
	// Sessions has one entry per node whose forwarder peers (or should
	// peer) with the router.
	// +optional
	// +listType=map
	// +listMapKey=node
	Sessions []BGPSession `json:"sessions,omitempty"`
}

// BGPPeer is a router the forwarders announce addresses of BGP IPPools to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgppeer,categories=portico
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="My ASN",type=integer,JSONPath=`.spec.myASN`
// +kubebuilder:printcolumn:name="Sessions",type=string,JSONPath=`.status.sessions[*].state`
// +kubebuilder:printcolumn:name="BFD",type=string,JSONPath=`.status.sessions[*].bfd`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec,omitempty"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}

// BGPAdvertisementSpec says which addresses are advertised to which peers
// and with which attributes.
type BGPAdvertisementSpec struct {
	// IPPools names the pools advertised. Empty with an empty
	// IPPoolSelector: every pool announced by BGP.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	IPPools []string `json:"ipPools,omitempty"`
	// IPPoolSelector picks pools by label, in addition to IPPools.
	// +optional
	IPPoolSelector *metav1.LabelSelector `json:"ipPoolSelector,omitempty"`
	// ServiceSelector limits the advertisement to Services with matching
	// labels; all Services when empty.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// Peers names the BGPPeers advertised to; all when empty.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Peers []string `json:"peers,omitempty"`
	// Communities are standard communities (RFC 1997) as "ASN:value",
	// each part 0..65535.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=11
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(c.split(':')[0]) <= 65535 && int(c.split(':')[1]) <= 65535)",message="communities must be ASN:value with both parts in 0..65535"
	Communities []string `json:"communities,omitempty"`
	// LargeCommunities are large communities (RFC 8092) as
	// "global:local1:local2", each part 0..4294967295.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.all(c, c.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && c.split(':').all(p, int(p) <= 4294967295))",message="large communities must be global:local1:local2 with each part in 0..4294967295"
	LargeCommunities []string `json:"largeCommunities,omitempty"`
	// LocalPref sets LOCAL_PREF on routes to iBGP peers (ignored for
	// eBGP, RFC 4271 5.1.5).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPref *int64 `json:"localPref,omitempty"`
	// AggregationLength is the IPv4 prefix length advertised for an
	// address (default 32, a host route). Shorter prefixes aggregate
	// addresses; they are advertised by every node serving any address
	// inside, so use them only with externalTrafficPolicy Cluster.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`
	// AggregationLengthV6 is the same for IPv6 (default 128).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
}

// BGPAdvertisement selects the addresses advertised over BGP and their
// path attributes.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv,categories=portico
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.ipPools`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Communities",type=string,JSONPath=`.spec.communities`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPAdvertisementSpec `json:"spec,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}
