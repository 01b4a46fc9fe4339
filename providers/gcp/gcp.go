// Package gcp is Portico's Google Cloud backend (class lb.portico.dev/gcp): a
// regional passthrough Network Load Balancer per Service, built on backend
// services (the design GKE uses today, not legacy target pools) with the
// cloud.google.com/go/compute/apiv1 REST clients.
//
// Per Service it owns a regional address (unless the user names a reserved
// one or asks for an ephemeral one), one forwarding rule per protocol, a
// regional backend service, a regional HTTP health check and two firewall
// rules (traffic from loadBalancerSourceRanges, and probes from Google's
// health-check ranges). The backend service points at per-zone unmanaged
// instance groups that the whole cluster shares, because an instance may
// belong to at most one load-balanced instance group. names.go documents
// the naming and ownership scheme. The API calls go through the narrow
// interfaces in api.go; tests point the real clients at the fake in gcpfake.
package gcp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/compute/metadata"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"
	"google.golang.org/api/option"

	"github.com/portico-lb/portico/providers"
)

// Name is the backend name; its class is lb.portico.dev/gcp.
const Name = "gcp"

// Health-check source ranges Google documents for passthrough load balancers.
var (
	// HealthCheckRanges probe every passthrough load balancer.
	HealthCheckRanges = []string{"35.191.0.0/16", "130.211.0.0/22"}
	// ExternalHealthCheckRanges additionally probe external passthrough
	// Network Load Balancers.
	ExternalHealthCheckRanges = []string{"209.85.152.0/22", "209.85.204.0/22"}
)

// DefaultExternalInstanceGroupsPrefix is the prefix of GKE's per-zone
// instance groups, k8s-ig--<cluster-uid>.
const DefaultExternalInstanceGroupsPrefix = "k8s-ig--"

// Options configure the provider.
type Options struct {
	ClusterID string
	Project   string
	Region    string
	// Network is the VPC network name or partial URL (projects/p/global/networks/n).
	Network string
	// NetworkProject owns Network (a Shared VPC host project); firewall
	// rules go there. Empty: Project.
	NetworkProject string
	// Subnetwork is the default subnet of internal load balancers.
	Subnetwork string
	// NetworkTier is the default tier of external addresses and rules.
	NetworkTier string
	// AllowedProjects are projects besides Project whose subnetworks
	// Services may name (gcp.lb.portico.dev/subnet).
	AllowedProjects []string
	// NodeTags, when set, narrow Portico's firewall rules to instances with
	// these network tags; otherwise the rules match by destination address.
	NodeTags []string
	// ExternalInstanceGroupsPrefix names instance groups made by others
	// (GKE's k8s-ig--) that Portico uses as backends for the nodes they
	// hold instead of putting those nodes in its own group; "" disables.
	ExternalInstanceGroupsPrefix string
	// ClusterHealthCheckPort is probed for externalTrafficPolicy Cluster
	// (kube-proxy's healthz port).
	ClusterHealthCheckPort int32
	// Backoff is the in-call retry policy for throttling and 5xx.
	Backoff Backoff
	// RetryAfter is suggested to the controller after throttling.
	RetryAfter time.Duration
	// QPS and Burst limit API calls client-side; QPS 0 disables the limit.
	QPS   float64
	Burst int
}

// Provider is the GCP backend.
type Provider struct {
	opts    Options
	api     *Clients
	limiter *rate.Limiter
}

var _ providers.Provider = (*Provider)(nil)

// New returns a provider calling api.
func New(api *Clients, opts Options) (*Provider, error) {
	if opts.Project == "" || opts.Region == "" || opts.Network == "" {
		return nil, errors.New("gcp provider needs a project, a region and a network")
	}
	if err := providers.ValidateClusterID(opts.ClusterID); err != nil {
		return nil, fmt.Errorf("gcp provider: %w", err)
	}
	if opts.NetworkProject == "" && strings.HasPrefix(opts.Network, "projects/") {
		// A network named by link tells its project (a Shared VPC host).
		opts.NetworkProject = strings.Split(opts.Network, "/")[1]
	}
	netProject := opts.Project
	if opts.NetworkProject != "" {
		netProject = opts.NetworkProject
	}
	if !strings.Contains(opts.Network, "/") {
		opts.Network = "projects/" + netProject + "/global/networks/" + opts.Network
	}
	if opts.Subnetwork != "" && !strings.Contains(opts.Subnetwork, "/") {
		opts.Subnetwork = "projects/" + netProject + "/regions/" + opts.Region + "/subnetworks/" + opts.Subnetwork
	}
	if opts.NetworkTier == "" {
		opts.NetworkTier = "PREMIUM"
	}
	if opts.ClusterHealthCheckPort == 0 {
		opts.ClusterHealthCheckPort = 10256
	}
	if opts.Backoff.Attempts <= 0 {
		opts.Backoff.Attempts = 8
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff.Initial = 250 * time.Millisecond
	}
	if opts.Backoff.Max <= 0 {
		opts.Backoff.Max = 10 * time.Second
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	p := &Provider{opts: opts, api: api}
	if opts.QPS > 0 {
		p.limiter = rate.NewLimiter(rate.Limit(opts.QPS), max(opts.Burst, 1))
	}
	return p, nil
}

// Class implements providers.Provider.
func (p *Provider) Class() string { return providers.Class(Name) }

// Config holds the operator flags of the GCP backend.
type Config struct {
	Project, Region, Network, Subnetwork string
	NetworkProject                       string
	NetworkTier                          string
	NodeTags                             []string
	AllowedProjects                      []string
	Endpoint                             string
	ClusterHealthCheckPort               int32
	ExternalInstanceGroupsPrefix         string
	QPS                                  float64
	Burst                                int
	Attempts                             int
}

// AddFlags registers --gcp-* flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Project, "gcp-project", "", "Google Cloud project of the load balancers. Default: the project of the node the operator runs on, from the metadata server.")
	fs.StringVar(&c.Region, "gcp-region", "", "Region of the load balancers. Default: the region of the node's zone, from the metadata server.")
	fs.StringVar(&c.Network, "gcp-network", "", "VPC network of the nodes (name or projects/<p>/global/networks/<n>). Default: the network of the node's first interface, from the metadata server.")
	fs.StringVar(&c.NetworkProject, "gcp-network-project", "", "Project that owns --gcp-network: the Shared VPC host project when the cluster runs in a service project. Portico's firewall rules are created there (service projects cannot create firewall rules for a shared network), and bare network and subnetwork names resolve there. Default: the project of a --gcp-network given as projects/<p>/global/networks/<n>, else --gcp-project.")
	fs.StringVar(&c.Subnetwork, "gcp-subnetwork", "", "Default subnetwork of internal load balancers (name or projects/<p>/regions/<r>/subnetworks/<n>); the gcp.lb.portico.dev/subnet annotation overrides it. Without either, internal Services report SubnetRequired.")
	fs.StringVar(&c.NetworkTier, "gcp-network-tier", "PREMIUM", "Default network tier of external load balancers: PREMIUM or STANDARD.")
	fs.StringSliceVar(&c.AllowedProjects, "gcp-allowed-projects", nil, "Projects besides --gcp-project whose subnetworks Services may name in gcp.lb.portico.dev/subnet (e.g. a Shared VPC host project). Anything else is refused (ResourceNotAllowed).")
	fs.StringSliceVar(&c.NodeTags, "gcp-node-tags", nil, "Network tags of the cluster's nodes; when set, Portico's firewall rules target only those instances.")
	fs.StringVar(&c.Endpoint, "gcp-endpoint", "", "Compute API endpoint, e.g. a private endpoint or an emulator (passed to option.WithEndpoint). Default: the library's, https://compute.googleapis.com.")
	fs.StringVar(&c.ExternalInstanceGroupsPrefix, "gcp-external-instance-groups-prefix", DefaultExternalInstanceGroupsPrefix, "Instance groups whose names start with this prefix (GKE's own k8s-ig--<uid>) and hold the Service's nodes are used as backends, unchanged, instead of Portico's group: an instance may be in only one load-balanced instance group. Empty disables.")
	fs.Int32Var(&c.ClusterHealthCheckPort, "gcp-cluster-health-check-port", 10256, "Node port probed for Services with externalTrafficPolicy Cluster (kube-proxy's healthz).")
	fs.Float64Var(&c.QPS, "gcp-api-qps", 10, "Client-side limit on Compute API calls per second, retries and operation polls included.")
	fs.IntVar(&c.Burst, "gcp-api-burst", 20, "Burst allowed above --gcp-api-qps.")
	fs.IntVar(&c.Attempts, "gcp-max-attempts", 8, "Attempts per Compute API call on throttling, quota-rate or 5xx errors, and per mutation whose Operation fails with INTERNAL_ERROR, RESOURCE_NOT_READY or RESOURCE_IN_USE_BY_ANOTHER_RESOURCE, before Portico requeues the Service.")
}

// Factory returns a providers.Factory bound to c. Credentials come from
// Application Default Credentials; they are never logged.
func (c *Config) Factory() providers.Factory {
	return func(ctx context.Context, opts providers.Options) (providers.Provider, error) {
		o := Options{
			ClusterID: opts.ClusterID, Project: c.Project, Region: c.Region, Network: c.Network, NetworkProject: c.NetworkProject,
			Subnetwork: c.Subnetwork, NetworkTier: strings.ToUpper(c.NetworkTier), NodeTags: c.NodeTags,
			AllowedProjects:              c.AllowedProjects,
			ExternalInstanceGroupsPrefix: c.ExternalInstanceGroupsPrefix,
			ClusterHealthCheckPort:       c.ClusterHealthCheckPort, QPS: c.QPS, Burst: c.Burst,
			Backoff: Backoff{Attempts: c.Attempts},
		}
		if o.NetworkTier != "PREMIUM" && o.NetworkTier != "STANDARD" {
			return nil, fmt.Errorf("--gcp-network-tier %q: want PREMIUM or STANDARD", c.NetworkTier)
		}
		if err := Discover(ctx, &o); err != nil {
			return nil, err
		}
		var copts []option.ClientOption
		if c.Endpoint != "" {
			copts = append(copts, option.WithEndpoint(c.Endpoint))
		}
		api, err := NewClients(ctx, copts...)
		if err != nil {
			return nil, err
		}
		return New(api, o)
	}
}

// Discover fills the project, region, network and subnetwork that o leaves
// empty from the GCE metadata server (GCE_METADATA_HOST overrides its
// address, as the metadata library documents).
func Discover(ctx context.Context, o *Options) error {
	if o.Project != "" && o.Region != "" && o.Network != "" {
		return nil
	}
	if !metadata.OnGCEWithContext(ctx) {
		return errors.New("gcp: --gcp-project, --gcp-region and --gcp-network are required off Google Cloud (no metadata server)")
	}
	var err error
	if o.Project == "" {
		if o.Project, err = metadata.ProjectIDWithContext(ctx); err != nil {
			return fmt.Errorf("reading the project from the metadata server: %w", err)
		}
	}
	if o.Region == "" {
		zone, err := metadata.ZoneWithContext(ctx)
		if err != nil {
			return fmt.Errorf("reading the zone from the metadata server: %w", err)
		}
		o.Region = RegionOf(zone)
	}
	if o.Network == "" {
		// "projects/<number>/networks/<name>"
		nw, err := metadata.GetWithContext(ctx, "instance/network-interfaces/0/network")
		if err != nil {
			return fmt.Errorf("reading the network from the metadata server: %w", err)
		}
		o.Network = nw[strings.LastIndex(nw, "/")+1:]
	}
	return nil
}

// RegionOf returns the region of a zone ("us-central1-a" -> "us-central1").
func RegionOf(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}
