package meters

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/pflag"
	"google.golang.org/api/option"
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/usage"
)

// Config is the operator's usage-metering settings (--usage-metrics and
// friends).
type Config struct {
	// Enabled reads usage from the clouds' metrics; off, cost holds the
	// price list's estimates only.
	Enabled  bool
	Interval time.Duration
	// CloudWatchEndpoint overrides the CloudWatch endpoint; empty uses the
	// SDK's (and AWS_ENDPOINT_URL_CLOUDWATCH).
	CloudWatchEndpoint string
	// MonitoringEndpoint overrides the Cloud Monitoring endpoint; empty
	// uses https://monitoring.googleapis.com/.
	MonitoringEndpoint string
	// AzureCloud is the Azure backend's cloud (the operator copies it
	// from --azure-cloud and --azure-arm-endpoint); zero is Azure public.
	AzureCloud cloud.Configuration
	// AWSRegion is the AWS backend's --aws-region (the operator copies it
	// here); empty uses AWS_REGION, the shared config or IMDS, as the
	// backend does.
	AWSRegion string
	// Leases reads the forwarders' Leases in Namespace (the operator's
	// cache) for the local meter.
	Leases    client.Reader
	Namespace string
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.Enabled, "usage-metrics", false, "Read each load balancer's metered usage from its cloud's metrics (AWS: CloudWatch AWS/NetworkELB ConsumedLCUs and ProcessedBytes, needs cloudwatch:GetMetricData; GCP: Cloud Monitoring l3/external/ingress_bytes_count, needs monitoring.timeSeries.list; Azure: Azure Monitor ByteCount per frontend, needs Microsoft.Insights/metrics/read; local: the forwarders' per-address byte counters, read from their Leases; GCP, Azure and local data is priced from a per-GB price in the price ConfigMap) and price it into status.cost.usage for the last day and the month to date; a reading that fails sets the UsageMeasured condition False and keeps the last good reading. Permissions: docs/providers/<cloud>.md.")
	fs.DurationVar(&c.Interval, "usage-metrics-interval", time.Hour, "How often usage is re-read from the metrics APIs (the meters read hourly sums).")
	fs.StringVar(&c.CloudWatchEndpoint, "aws-cloudwatch-endpoint", "", "Endpoint of the CloudWatch API for --usage-metrics; empty uses the SDK's (or AWS_ENDPOINT_URL_CLOUDWATCH).")
	fs.StringVar(&c.MonitoringEndpoint, "gcp-monitoring-endpoint", "", "Endpoint of the Cloud Monitoring API for --usage-metrics; empty uses https://monitoring.googleapis.com/.")
}

// Validate checks the settings when metering is on.
func (c *Config) Validate() error {
	if c.Enabled && c.Interval < 5*time.Minute {
		return fmt.Errorf("--usage-metrics-interval %s: want at least 5m (the metrics are hourly; GetMetricData is billed per metric read)", c.Interval)
	}
	return nil
}

// builders is the explicit map of meters by backend name; backends
// without one (memory) keep the price list's estimate.
var builders = map[string]func(ctx context.Context, c *Config) (usage.Meter, error){
	"aws": func(ctx context.Context, c *Config) (usage.Meter, error) {
		loaders := []func(*config.LoadOptions) error{config.WithEC2IMDSRegion()}
		if c.AWSRegion != "" {
			loaders = append(loaders, config.WithRegion(c.AWSRegion))
		}
		cfg, err := config.LoadDefaultConfig(ctx, loaders...)
		if err != nil {
			return nil, fmt.Errorf("cloudwatch: %w", err)
		}
		return NewAWSNLB(cfg, c.CloudWatchEndpoint), nil
	},
	"azure": func(_ context.Context, c *Config) (usage.Meter, error) {
		cfg := c.AzureCloud
		if cfg.Services == nil {
			cfg = cloud.AzurePublic
		}
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: azcore.ClientOptions{Cloud: cfg}})
		if err != nil {
			return nil, fmt.Errorf("azure monitor credentials: %w", err)
		}
		// The subscription is only used by subscription-scope calls; the
		// meter names each load balancer by its full resource ID.
		return NewAzureStandardLB("", cred, &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Cloud: cfg}})
	},
	"local": func(_ context.Context, c *Config) (usage.Meter, error) {
		if c.Leases == nil {
			return nil, errors.New("local usage meter: no reader of the forwarders' Leases")
		}
		return &LocalBytes{Snapshots: LeaseSnapshots(c.Leases, c.Namespace), PollInterval: time.Minute}, nil
	},
	"gcp": func(ctx context.Context, c *Config) (usage.Meter, error) {
		var opts []option.ClientOption
		if c.MonitoringEndpoint != "" {
			opts = append(opts, option.WithEndpoint(c.MonitoringEndpoint))
		}
		return NewGCPForwardingRule(ctx, opts...)
	},
}

// Build returns the meters of the enabled backends that have one (none
// when metering is off).
func (c *Config) Build(ctx context.Context, backends []string) ([]usage.Meter, error) {
	if !c.Enabled {
		return nil, nil
	}
	names := append([]string(nil), backends...)
	sort.Strings(names)
	var out []usage.Meter
	for _, b := range names {
		build, ok := builders[b]
		if !ok {
			continue
		}
		m, err := build(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// LeaseSnapshots lists the byte snapshots on the Leases in namespace that
// carry one (the forwarders'), by the Lease's holder (the node).
func LeaseSnapshots(r client.Reader, namespace string) func(ctx context.Context) (map[string]string, error) {
	return func(ctx context.Context) (map[string]string, error) {
		var list coordinationv1.LeaseList
		if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		out := map[string]string{}
		for i := range list.Items {
			l := &list.Items[i]
			v, ok := l.Annotations[usage.AnnotationForwarderBytes]
			if !ok {
				continue
			}
			node := l.Name
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				node = *l.Spec.HolderIdentity
			}
			out[node] = v
		}
		return out, nil
	}
}
