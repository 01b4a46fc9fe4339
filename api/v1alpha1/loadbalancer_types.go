package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LoadBalancerSpec names the Service a LoadBalancer belongs to. Portico creates
// the object; users read it.
type LoadBalancerSpec struct {
	// Class is the Service's loadBalancerClass that selected the backend.
	Class string `json:"class"`
}

// LoadBalancerAddress is one external address of a load balancer.
type LoadBalancerAddress struct {
	// IP is set for backends that hand out addresses.
	// +optional
	IP string `json:"ip,omitempty"`
	// Hostname is set for backends that publish a DNS name (AWS NLB).
	// +optional
	Hostname string `json:"hostname,omitempty"`
	// IPMode is VIP or Proxy, as in Service status.
	// +optional
	IPMode string `json:"ipMode,omitempty"`
	// Node is the node that announces this address (local backend only).
	// +optional
	Node string `json:"node,omitempty"`
}

// Announcement says which node announces a local address.
type Announcement struct {
	// Address is the load-balancer IP.
	Address string `json:"address"`
	// Node announces Address (answers ARP who-has / NDP solicitations).
	Node string `json:"node"`
	// Since is when Node took the address over.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// BGPStatus is how a local load balancer's addresses are advertised over
// BGP.
type BGPStatus struct {
	// AdvertisingNodes advertise at least one of the addresses, sorted;
	// empty when none does.
	// +optional
	AdvertisingNodes []string `json:"advertisingNodes,omitempty"`
	// Addresses has one entry per address in an IPPool announced by BGP.
	// +optional
	// +listType=map
	// +listMapKey=address
	Addresses []BGPAddressStatus `json:"addresses,omitempty"`
}

// BGPAddressStatus is how one address is advertised over BGP.
type BGPAddressStatus struct {
	// Address is the load-balancer IP.
	Address string `json:"address"`
	// IPPool holds the address.
	IPPool string `json:"ipPool"`
	// Announce is the pool's spec.announce (BGP or L2AndBGP).
	Announce string `json:"announce"`
	// Peers are the BGPPeers the address is advertised to (by the
	// BGPAdvertisements that select its pool and Service, or another
	// Service sharing the address), sorted.
	// +optional
	Peers []string `json:"peers,omitempty"`
	// Nodes advertise the address, sorted: each may serve it, or another
	// Service sharing it (eligible and, for externalTrafficPolicy Local,
	// holding a ready endpoint), and reports an Established session with
	// one of Peers that selects it and receives the address for that
	// Service.
	// +optional
	Nodes []string `json:"nodes,omitempty"`
}

// ProviderResource is one resource a backend created for the load balancer.
type ProviderResource struct {
	// Kind is the backend's name for the resource type, e.g. "loadBalancer",
	// "targetGroup", "forwardingRule".
	Kind string `json:"kind"`
	// ID is the backend's identifier (ARN, self link, resource ID, address).
	ID string `json:"id"`
}

// PortStatus reports one Service port as the backend carries it.
type PortStatus struct {
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	// +optional
	Error string `json:"error,omitempty"`
}

// EndpointsStatus counts a Service's endpoints (from its EndpointSlices).
type EndpointsStatus struct {
	// Ready endpoints take new connections.
	Ready int32 `json:"ready"`
	// Total counts every endpoint, ready or not.
	Total int32 `json:"total"`
	// Nodes hold at least one ready endpoint, sorted.
	// +optional
	Nodes []string `json:"nodes,omitempty"`
}

// BackendStatus counts the backends behind the load balancer.
type BackendStatus struct {
	// Total is how many backends (nodes or pods) the load balancer targets.
	// Optional so that a merge patch that leaves it at 0 is valid.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Total int32 `json:"total"`
	// Healthy is how many of them the backend reports healthy; -1 when the
	// backend cannot tell. Optional: a cloud load balancer's targets are all
	// unhealthy until their first health checks pass, and a merge patch
	// from an empty status then carries total but not healthy=0.
	// +optional
	// +kubebuilder:validation:Minimum=-1
	Healthy int32 `json:"healthy"`
}

// CostStatus is a load balancer's priced cost. Amounts are decimal strings
// ("0.0225") so that no float rounding reaches the API.
type CostStatus struct {
	// Hourly is the estimated cost per hour.
	Hourly string `json:"hourly"`
	// Monthly is Hourly times 730 hours.
	Monthly string `json:"monthly"`
	// Currency is an ISO 4217 code, e.g. "USD".
	Currency string `json:"currency"`
	// Source names the price data and its date, e.g. "embedded:aws-2026-10-01"
	// or "configmap:portico-system/portico-prices".
	Source string `json:"source"`
	// Region the prices are for.
	// +optional
	Region string `json:"region,omitempty"`
	// Breakdown itemises the hourly cost by priced unit.
	// +optional
	Breakdown []CostItem `json:"breakdown,omitempty"`
	// Basis says how the prices are known for Region: "live" (read from
	// the cloud's price API), "documented" (the embedded list price for
	// this region), "observed" (read off a bill), or "carried:<region>"
	// (the embedded price of another region, assumed to be the same and
	// not confirmed for this one). Empty for ConfigMap prices without one.
	// +optional
	Basis string `json:"basis,omitempty"`
	// FetchedAt is when the prices were read from a live price API (Source
	// "live:<api>"); unset for embedded and ConfigMap prices, whose date is
	// in Source.
	// +optional
	FetchedAt *metav1.Time `json:"fetchedAt,omitempty"`
	// Stale is true when the live prices in use are older than the
	// operator's --price-stale-after: the price API has not given a usable
	// answer since FetchedAt.
	// +optional
	Stale bool `json:"stale,omitempty"`
	// SourceError says why the live price API was not used or not
	// refreshed (unreachable, not permitted, bad data). With Source
	// "embedded:..." it marks a fallback to the embedded catalog.
	// +optional
	SourceError string `json:"sourceError,omitempty"`
	// Fixed is the part of Hourly billed by the hour whatever the traffic
	// (the load balancer hour, rules, addresses): Hourly less the usage
	// part, or less the estimated usage when none is measured.
	// +optional
	Fixed string `json:"fixed,omitempty"`
	// Usage is the traffic-driven part measured from the cloud's metrics
	// (--usage-metrics) or the forwarders' byte counters. When set,
	// Hourly is Fixed plus Usage.Hourly, and no estimated usage line is
	// left in Breakdown for what it measured.
	// +optional
	Usage *UsageCost `json:"usage,omitempty"`
}

// UsageCost is metered usage and its price over the last day and the
// month to date.
type UsageCost struct {
	// Source names the metrics the quantities were read from, e.g.
	// "cloudwatch:AWS/NetworkELB".
	Source string `json:"source"`
	// MeasuredAt is when the metrics were last read successfully.
	MeasuredAt metav1.Time `json:"measuredAt"`
	// Hourly is LastDay's amount divided by its hours: the usage part of
	// the hourly rate, a decimal string.
	Hourly string `json:"hourly"`
	// LastDay is the 24 whole hours before MeasuredAt's hour.
	// +optional
	LastDay *UsagePeriod `json:"lastDay,omitempty"`
	// MonthToDate runs from the first of the month, 00:00 UTC, to the same
	// end as LastDay.
	// +optional
	MonthToDate *UsagePeriod `json:"monthToDate,omitempty"`
	// Error says why the latest reading failed; the quantities are then
	// those of MeasuredAt, kept rather than replaced by a zero.
	// +optional
	Error string `json:"error,omitempty"`
}

// UsagePeriod is usage measured over one period.
type UsagePeriod struct {
	// Start and End bound the period (End exclusive).
	Start metav1.Time `json:"start"`
	End   metav1.Time `json:"end"`
	// Amount is the cost of the period's usage, a decimal string.
	Amount string `json:"amount"`
	// Items are the measured quantities.
	// +optional
	Items []UsageItem `json:"items,omitempty"`
}

// UsageItem is one measured quantity.
type UsageItem struct {
	// Item names what was measured, e.g. "nlcu", "processed-bytes".
	Item string `json:"item"`
	// Unit of Quantity: "<item>-hours" for a unit billed by the hour
	// ("nlcu-hours"), or "GB" (10^9 bytes).
	Unit string `json:"unit"`
	// Quantity measured in the period, a decimal string.
	Quantity string `json:"quantity"`
	// Amount is what Quantity costs, a decimal string; empty when the
	// quantity is billed through another item (AWS bills processed bytes
	// as part of NLCUs).
	// +optional
	Amount string `json:"amount,omitempty"`
}

// CostItem is one priced line of a cost breakdown.
type CostItem struct {
	// Item names what is priced, e.g. "nlb-hour", "nlcu-estimate", "forwarding-rule".
	Item string `json:"item"`
	// Quantity of the item.
	Quantity int32 `json:"quantity"`
	// Hourly is the hourly cost of Quantity items, a decimal string.
	Hourly string `json:"hourly"`
}

// LoadBalancerStatus is what Portico built and how it is doing.
type LoadBalancerStatus struct {
	// Class is the backend class that built the load balancer.
	// +optional
	Class string `json:"class,omitempty"`
	// Addresses are the external addresses written to the Service.
	// +optional
	Addresses []LoadBalancerAddress `json:"addresses,omitempty"`
	// Address is the first address, for printer columns.
	// +optional
	Address string `json:"address,omitempty"`
	// Ports is the per-port state.
	// +optional
	Ports []PortStatus `json:"ports,omitempty"`
	// Resources are the backend's resources for this load balancer.
	// +optional
	Resources []ProviderResource `json:"resources,omitempty"`
	// Backends counts targeted and healthy backends.
	// +optional
	Backends BackendStatus `json:"backends,omitempty"`
	// BackendsSummary is "healthy/total", for printer columns.
	// +optional
	BackendsSummary string `json:"backendsSummary,omitempty"`
	// Endpoints counts the Service's endpoints and the nodes that hold a
	// ready one: whether the load balancer has anything to send traffic to.
	// +optional
	Endpoints *EndpointsStatus `json:"endpoints,omitempty"`
	// Ready mirrors the Ready condition's status, for printer columns.
	// +optional
	Ready string `json:"ready,omitempty"`
	// Announcements list, for local addresses, which node answers ARP/NDP
	// for each address. portico-forwarder owns this field (server-side apply
	// field manager "portico-forwarder"); the operator never writes it.
	// +optional
	// +listType=map
	// +listMapKey=address
	Announcements []Announcement `json:"announcements,omitempty"`
	// BGP says which nodes advertise the addresses that lie in IPPools
	// announced by BGP (local backend). The operator derives it from the
	// BGPPeers' status.sessions (written by each node's forwarder) and the
	// same advertisement rules the forwarders plan with.
	// +optional
	BGP *BGPStatus `json:"bgp,omitempty"`
	// Cost is the priced estimate of running this load balancer.
	// +optional
	Cost *CostStatus `json:"cost,omitempty"`
	// MonthlyCost is Cost.Monthly with its currency, for printer columns.
	// +optional
	MonthlyCost string `json:"monthlyCost,omitempty"`
	// Conditions describe the load balancer's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastSyncTime is when the backend was last reconciled successfully.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// AppliedHash fingerprints the desired state last applied to the backend,
	// so that restarts and resyncs can tell a change from a repeat.
	// +optional
	AppliedHash string `json:"appliedHash,omitempty"`
	// ObservedGeneration is the Service generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// LoadBalancer is Portico's record of the load balancer behind one Service. It
// has the Service's name and namespace and is owned by it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=plb;lbs,categories=portico
// +kubebuilder:printcolumn:name="Class",type=string,JSONPath=`.spec.class`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Backends",type=string,JSONPath=`.status.backendsSummary`
// +kubebuilder:printcolumn:name="Endpoints",type=integer,JSONPath=`.status.endpoints.ready`
// +kubebuilder:printcolumn:name="Monthly Cost",type=string,JSONPath=`.status.monthlyCost`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.announcements[0].node`,priority=1
// +kubebuilder:printcolumn:name="BGP Nodes",type=string,JSONPath=`.status.bgp.advertisingNodes`,priority=1
type LoadBalancer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LoadBalancerSpec   `json:"spec,omitempty"`
	Status LoadBalancerStatus `json:"status,omitempty"`
}

// LoadBalancerList is a list of LoadBalancers.
//
// +kubebuilder:object:root=true
type LoadBalancerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LoadBalancer `json:"items"`
}
