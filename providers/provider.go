// Package providers defines the contract between Portico's Service controller
// and the backends that build load balancers (aws, gcp, azure, local, memory).
//
// The contract is deliberately small, in the spirit of k8s.io/cloud-provider's
// LoadBalancer interface and external-dns' Provider: context first, idempotent
// Ensure and Delete, inputs treated as read-only, deterministic names derived
// from the Key.
package providers

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// ClassPrefix is the prefix of every Portico loadBalancerClass.
const ClassPrefix = "lb.portico.dev/"

// Class returns the loadBalancerClass of the backend name ("aws" -> "lb.portico.dev/aws").
func Class(name string) string { return ClassPrefix + name }

// Provider builds and removes load balancers for one class.
type Provider interface {
	// Class is the loadBalancerClass this provider serves, lb.portico.dev/<name>.
	Class() string

	// Ensure makes the backend match desired and returns what it observed
	// afterwards. It is idempotent: calling it again with the same input makes
	// no mutating call. It must tolerate a previous Ensure that stopped at any
	// step, adopting what that call created instead of duplicating it.
	Ensure(ctx context.Context, desired *LoadBalancer) (*Status, error)

	// Observe reads the load balancer without changing anything. It returns
	// ErrNotFound when nothing exists for key.
	Observe(ctx context.Context, key Key) (*Status, error)

	// Delete removes everything the provider created for key. Deleting what
	// is already gone succeeds. It never removes a resource that does not
	// carry Portico's ownership marks for key.
	Delete(ctx context.Context, key Key) error
}

// PodTargeter is implemented by providers that can send traffic straight to
// pod IPs, which Services with allocateLoadBalancerNodePorts: false need.
// Providers that do not implement it (or return false) get a clear condition
// for such Services instead of a call.
type PodTargeter interface {
	TargetsPods() bool
}

// LocalHealthChecker is implemented by providers whose load balancers
// health-check a Service's healthCheckNodePort. For externalTrafficPolicy
// Local such a provider receives every eligible node, not only those with a
// ready endpoint, and the health check keeps traffic to the nodes that have
// one, as cloud-provider-aws and the aws-load-balancer-controller do: a pod
// moving between nodes then changes no target registration.
type LocalHealthChecker interface {
	HealthChecksLocal() bool
}

// Key identifies one load balancer: the Service it belongs to and the cluster
// it runs in. Providers derive resource names and ownership tags from it.
type Key struct {
	ClusterID string
	Namespace string
	Name      string
	// UID is the Service's UID; providers may fold it into names so that a
	// Service recreated under the same name gets fresh resources.
	UID string
}

// String returns namespace/name.
func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Protocol is a transport protocol as used in a Service port.
type Protocol string

// Transport protocols Portico carries.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Port is one Service port the load balancer must carry.
type Port struct {
	Name     string
	Protocol Protocol
	// Port is the load balancer's listening port.
	Port int32
	// NodePort is the Service's node port; zero when node ports are not
	// allocated (allocateLoadBalancerNodePorts: false).
	NodePort int32
	// TargetPort is the resolved endpoint port for pod-targeting backends,
	// zero when endpoints use differing numbers for a named port.
	TargetPort int32
}

// Node is one node eligible to receive load-balanced traffic.
type Node struct {
	Name string
	// ProviderID is the node's spec.providerID (aws:///zone/i-..., gce://..., azure://...).
	ProviderID string
	// InternalIPs and ExternalIPs come from the node's status addresses.
	InternalIPs []netip.Addr
	ExternalIPs []netip.Addr
	// Zone is topology.kubernetes.io/zone, when set.
	Zone string
}

// Endpoint is one ready pod endpoint behind the Service.
type Endpoint struct {
	IP       netip.Addr
	NodeName string
	// Ports maps a Service port name to this endpoint's port number.
	Ports map[string]int32
	// Serving and Terminating follow EndpointSlice conditions; only Ready
	// endpoints take new connections.
	Ready       bool
	Serving     bool
	Terminating bool
}

// TrafficPolicy is the Service's externalTrafficPolicy.
type TrafficPolicy string

// External traffic policies.
const (
	TrafficPolicyCluster TrafficPolicy = "Cluster"
	TrafficPolicyLocal   TrafficPolicy = "Local"
)

// Scheme is whether the load balancer faces the internet or only the network.
type Scheme string

// Load balancer schemes.
const (
	SchemeExternal Scheme = "external"
	SchemeInternal Scheme = "internal"
)

// LoadBalancer is the desired state of one load balancer. It is computed from
// the Service, the eligible Nodes and the EndpointSlices by a pure function
// (controllers.Desired) and must be treated as read-only by providers.
type LoadBalancer struct {
	Key   Key
	Class string

	Ports []Port
	// Nodes are the eligible backends, sorted by name. With
	// TrafficPolicyLocal they are already narrowed to nodes with a ready
	// local endpoint, unless the provider is a LocalHealthChecker.
	Nodes []Node
	// Endpoints are the Service's ready pod endpoints, sorted by IP.
	Endpoints []Endpoint

	// TargetPods asks for pod targets instead of node ports; set when the
	// Service has allocateLoadBalancerNodePorts: false.
	TargetPods bool

	TrafficPolicy       TrafficPolicy
	HealthCheckNodePort int32

	// SourceRanges are the allowed client ranges (loadBalancerSourceRanges);
	// empty means everyone.
	SourceRanges []netip.Prefix

	// IPFamilies is the Service's ipFamilies ("IPv4", "IPv6"), primary first;
	// DualStack is true when ipFamilyPolicy asks for both families.
	IPFamilies []string
	DualStack  bool

	// SessionAffinityTimeout is non-zero when sessionAffinity is ClientIP.
	SessionAffinityTimeout time.Duration

	// Scheme comes from lb.portico.dev/scheme.
	Scheme Scheme
	// RequestedIPs come from lb.portico.dev/ip or spec.loadBalancerIP.
	RequestedIPs []netip.Addr
	// SharingKey comes from lb.portico.dev/allow-shared-ip.
	SharingKey string
	// Selector is the Service's pod selector. The local backend lets two
	// Services with TrafficPolicyLocal share an address only when their
	// selectors are equal (and not empty), so one node serves them all.
	Selector map[string]string

	// Labels are the Service's labels, for pool selectors.
	Labels map[string]string
	// NamespaceLabels are the labels of the Service's namespace.
	NamespaceLabels map[string]string
	// Annotations are the Service's annotations; providers parse their own
	// <provider>.lb.portico.dev/* keys from it and return a *ConfigError for
	// malformed ones.
	Annotations map[string]string
}

// IPMode is how traffic to an ingress address reaches the node (see Service
// status.loadBalancer.ingress[].ipMode).
type IPMode string

// Ingress IP modes.
const (
	IPModeVIP   IPMode = "VIP"
	IPModeProxy IPMode = "Proxy"
)

// Ingress is one address a load balancer answers on.
type Ingress struct {
	IP       netip.Addr
	Hostname string
	IPMode   IPMode
	// Node is the node announcing the address, for the local backend.
	Node string
}

// Resource is one backend resource created for a load balancer.
type Resource struct {
	Kind string
	ID   string
}

// PortStatus is the backend's view of one port; Error is empty when healthy.
type PortStatus struct {
	Port     int32
	Protocol Protocol
	Error    string
}

// Backends counts the targets the backend has registered and how many pass
// health checks. Healthy is -1 when the backend cannot tell.
type Backends struct {
	Total   int
	Healthy int
}

// CostInputs are what a price catalog needs to price a load balancer.
type CostInputs struct {
	// Kind names the priced product: "aws-nlb", "gcp-forwarding-rule",
	// "azure-standard-lb", "local-address".
	Kind   string
	Region string
	// Units counts the product's priced units, e.g. {"listeners": 2,
	// "targets": 3, "forwardingRules": 1, "rules": 2, "publicIPs": 1,
	// "addresses": 1}.
	Units map[string]int
	// Tier is a product tier where prices differ ("PREMIUM", "STANDARD").
	Tier string
	// MeterID is the resource the cloud's usage metrics are about (AWS:
	// the NLB's ARN); empty when the backend has no metered usage.
	MeterID string
	// Usage is metered usage, filled by the operator from a usage meter
	// (package usage) before pricing; providers leave it nil.
	Usage *Usage
}

// Usage is traffic-driven usage read from a cloud's metrics or the
// forwarders' counters, over the last day and the month to date.
type Usage struct {
	// Source names the metrics, e.g. "cloudwatch:AWS/NetworkELB".
	Source     string
	MeasuredAt time.Time
	// LastDay and MonthToDate are the measured periods; either may be nil.
	LastDay, MonthToDate *UsageWindow
	// Error is the latest reading's failure while these are the last good
	// quantities; empty after a good reading.
	Error string
}

// UsageWindow is usage measured over [Start, End).
type UsageWindow struct {
	Start, End time.Time
	Quantities []UsageQuantity
}

// UsageQuantity is one measured quantity. Exact decimal: no float reaches
// the API.
type UsageQuantity struct {
	// Name is a CostInputs unit measured in unit-hours (Unit
	// UnitHours, e.g. "nlcus": priced at the unit's hourly price) or a
	// data item measured in GB (Unit "GB", e.g. "dataProcessed": priced
	// at the price list's per-GB price).
	Name string
	Unit string
	// Value is the quantity, never negative.
	Value *big.Rat
	// Included marks a quantity billed as part of another (AWS bills
	// processed bytes through NLCUs): shown, not priced.
	Included bool
}

// Units of a UsageQuantity.
const (
	UnitHours = "unit-hours"
	UnitGB    = "GB"
)

// Status is what a provider observed after Ensure or Observe.
type Status struct {
	Ingress   []Ingress
	Resources []Resource
	Ports     []PortStatus
	Backends  Backends
	Cost      CostInputs

	// BGP says which nodes advertise the addresses over BGP (local
	// backend, IPPools announced by BGP); nil otherwise.
	BGP *v1alpha1.BGPStatus
	// NotReady, when set, says why the load balancer is built but its
	// addresses reach no client: the Service's Ready condition is False
	// with its reason and message.
	NotReady *Problem
	// Warning, when set, is a problem that leaves the load balancer
	// serving (Ready stays True); the Ready message carries it.
	Warning string
}

// Problem is a reason (UpperCamelCase) and a message for a condition.
type Problem struct {
	Reason, Message string
}

// Reasons of Status.NotReady: an address of an IPPool announced by BGP only
// that no node advertises (docs/bgp.md).
const (
	// ReasonNoBGPPeer: no BGPPeer receives the address.
	ReasonNoBGPPeer = "NoBGPPeer"
	// ReasonNoBGPSession: no node has an Established session with a
	// BGPPeer that receives it.
	ReasonNoBGPSession = "NoBGPSession"
	// ReasonNotAdvertised: sessions are up, but on none of the nodes that
	// serve the Service.
	ReasonNotAdvertised = "NotAdvertised"
)

// Factory builds a provider from the settings every provider shares. A
// backend's own settings live in its Config type, whose AddFlags registers
// --<name>-* flags on the operator; Config.Factory returns a Factory bound to
// them. The operator wires backends through an explicit map (cmd/portico-operator).
type Factory func(ctx context.Context, opts Options) (Provider, error)

// Options are the settings every provider receives from the operator.
type Options struct {
	// ClusterID goes into ownership tags and resource names.
	ClusterID string
	// Client reads and writes Kubernetes objects (the local backend's
	// IPPools and allocation records); cloud backends ignore it.
	Client client.Client
	// Hooks reach back into the Service controller.
	Hooks Hooks
}

// Hooks let a backend ask the Service controller to act: the controller sets
// them before it builds the backends. Nil hooks do nothing.
type Hooks struct {
	// RetryPending retries every Service of the backend's class that has
	// no address yet (capacity was freed).
	RetryPending func()
	// Reensure ensures these Services again, even if nothing about them
	// changed (the backend's own configuration did).
	Reensure func(services []types.NamespacedName)
}

// ControllerSetup is implemented by backends that run controllers of their
// own (the local backend's IPPool status); the operator registers them
// through it, with no special case per backend, and hands them its Event
// recorder (one per process, with bounded memory: internal/eventrec).
type ControllerSetup interface {
	SetupWithManager(mgr manager.Manager, rec events.EventRecorder) error
}

// OwnershipTags returns the tags every cloud resource for key must carry (see
// ../docs/architecture.md, "Ownership").
func OwnershipTags(key Key) map[string]string {
	return map[string]string{
		TagCluster:   key.ClusterID,
		TagService:   key.Namespace + "/" + key.Name,
		TagManagedBy: ManagedByValue,
	}
}

// Ownership tag keys and the managed-by value.
const (
	TagCluster     = "portico.dev/cluster"
	TagService     = "portico.dev/service"
	TagManagedBy   = "portico.dev/managed-by"
	ManagedByValue = "portico"
)

// Owns reports whether tags mark a resource as Portico's for key.
func Owns(tags map[string]string, key Key) bool {
	return tags[TagManagedBy] == ManagedByValue &&
		tags[TagCluster] == key.ClusterID &&
		tags[TagService] == key.Namespace+"/"+key.Name
}

// Validate reports malformed desired state that no provider can build.
func (lb *LoadBalancer) Validate() error {
	if lb.Key.Name == "" || lb.Key.Namespace == "" {
		return fmt.Errorf("load balancer has no service key")
	}
	if len(lb.Ports) == 0 {
		return &ConfigError{Reason: "NoPorts", Message: "the Service has no ports"}
	}
	return nil
}
