// Package aws is Portico's AWS backend (class lb.portico.dev/aws): one
// Network Load Balancer per Service, built with aws-sdk-go-v2.
//
// For each Service it owns an NLB, a security group attached to it, one
// target group per listener port and protocol, and one listener per port.
// Every resource carries Portico's ownership tags (providers.OwnershipTags)
// and a name derived from the Service key (see LoadBalancerName,
// TargetGroupName); resources without the tags are never modified or deleted.
// The SDK calls go through ELBAPI and EC2API, the narrow subset of the APIs
// used; tests point the real clients at the wire-level fake in awsfake.
package aws

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go/middleware"
	"github.com/spf13/pflag"
	"golang.org/x/time/rate"

	"github.com/portico-lb/portico/providers"
)

// Name is the backend name; its class is lb.portico.dev/aws.
const Name = "aws"

// CostKind is the priced product this backend reports in CostInputs.
const CostKind = "aws-nlb"

// Options configure the provider.
type Options struct {
	// ClusterID goes into ownership tags and names.
	ClusterID string
	// ClusterName is <name> in the kubernetes.io/cluster/<name> subnet tag
	// used for subnet discovery; it defaults to ClusterID.
	ClusterName string
	// VPCID restricts subnet discovery to one VPC; empty accepts the VPC of
	// the tagged subnets when they all share one.
	VPCID string
	// AllowUntaggedSubnets lets a Service name subnets that carry no
	// cluster tag at all (see allowSubnets).
	AllowUntaggedSubnets bool
	// AllowUntaggedEIPs lets a Service name Elastic IP allocations that
	// carry no cluster tag at all.
	AllowUntaggedEIPs bool
	// AWS is the SDK configuration: region, credentials, retryer, HTTP
	// client and endpoint settings (AWS_ENDPOINT_URL* are honoured by
	// config.LoadDefaultConfig).
	AWS aws.Config
	// EndpointURL, when set, overrides the endpoint of both services.
	EndpointURL string
	// RateLimit and Burst bound the API calls per second this provider makes
	// (every attempt, retries included). Zero means 10 per second, burst 20.
	RateLimit rate.Limit
	Burst     int
	// DisableBackendSecurityGroupRules stops Portico from giving load
	// balancers the cluster's backend security group and opening the node
	// security groups to it (see ensureBackendRules).
	DisableBackendSecurityGroupRules bool
	// RetryAfter is the delay suggested to the controller after throttling
	// or a 5xx (default 5s); dependency and eventual-consistency waits use
	// a fifth of it.
	RetryAfter time.Duration
}

// Provider is the AWS backend. Create it with New.
type Provider struct {
	opts Options
	elb  ELBAPI
	ec2  EC2API

	mu sync.Mutex
	// swept holds the load balancers whose last Ensure in this process
	// finished; any other gets one sweep for target groups an interrupted
	// run left unattached (see sweepOrphanGroups).
	swept map[string]bool
	// backend caches the backend security group and node group rules;
	// backendMu serialises the Ensures that write them.
	backend   *backendState
	backendMu sync.Mutex
	// discovered caches subnet discovery by role tag.
	discovered map[string]discovery
	// inUse counts ResourceInUse answers per target group ARN, for backoff.
	inUse map[string]int
}

var _ providers.Provider = (*Provider)(nil)

// New builds a provider whose SDK clients share one client-side rate limiter.
func New(opts Options) (*Provider, error) {
	if err := providers.ValidateClusterID(opts.ClusterID); err != nil {
		return nil, fmt.Errorf("aws provider: %w", err)
	}
	if opts.AWS.Region == "" {
		return nil, fmt.Errorf("aws provider: no region; set --aws-region, AWS_REGION, or run on EC2 with IMDS reachable")
	}
	if opts.ClusterName == "" {
		opts.ClusterName = opts.ClusterID
	}
	if opts.RateLimit == 0 {
		opts.RateLimit, opts.Burst = 10, 20
	}
	if opts.Burst <= 0 {
		opts.Burst = 1
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	limiter := rate.NewLimiter(opts.RateLimit, opts.Burst)
	limit := func(stack *middleware.Stack) error { return addRateLimit(stack, limiter) }
	elbClient := elbv2.NewFromConfig(opts.AWS, func(o *elbv2.Options) {
		o.APIOptions = append(o.APIOptions, limit)
		if opts.EndpointURL != "" {
			o.BaseEndpoint = aws.String(opts.EndpointURL)
		}
	})
	ec2Client := ec2.NewFromConfig(opts.AWS, func(o *ec2.Options) {
		o.APIOptions = append(o.APIOptions, limit)
		if opts.EndpointURL != "" {
			o.BaseEndpoint = aws.String(opts.EndpointURL)
		}
	})
	return &Provider{opts: opts, elb: elbClient, ec2: ec2Client, swept: map[string]bool{}, backend: newBackendState(), inUse: map[string]int{}, discovered: map[string]discovery{}}, nil
}

// addRateLimit waits for the limiter before every attempt; it sits after the
// SDK's retry middleware so that retries are paced too.
func addRateLimit(stack *middleware.Stack, l *rate.Limiter) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("PorticoRateLimit",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if err := l.Wait(ctx); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
}

// Class implements providers.Provider.
func (p *Provider) Class() string { return providers.Class(Name) }

var _ providers.PodTargeter = (*Provider)(nil)

// TargetsPods implements providers.PodTargeter: pod IPs are registered in
// target groups of target type ip (the aws-load-balancer-controller's
// "ip" mode), which needs a CNI that gives pods VPC addresses.
func (p *Provider) TargetsPods() bool { return true }

var _ providers.LocalHealthChecker = (*Provider)(nil)

// HealthChecksLocal implements providers.LocalHealthChecker: with
// externalTrafficPolicy Local the target groups' HTTP health check of
// healthCheckNodePort (kube-proxy answers 200 only on nodes with a ready
// endpoint) decides which registered nodes get traffic.
func (p *Provider) HealthChecksLocal() bool { return true }

// Config holds the operator flags of the AWS backend.
type Config struct {
	Region               string
	EndpointURL          string
	ClusterName          string
	VPCID                string
	AllowUntaggedSubnets bool
	AllowUntaggedEIPs    bool
	APIQPS               float64
	APIBurst             int
	MaxAttempts          int
	// DisableBackendRules stops giving load balancers the cluster's
	// backend security group and opening the node security groups to it;
	// the zero value manages them, as the flag's default does.
	DisableBackendRules bool
}

// negatedBool is a bool flag stored negated, so that a Config built without
// flags keeps the flag's default.
type negatedBool struct{ p *bool }

func (b negatedBool) String() string {
	if b.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*b.p)
}

func (b negatedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b.p = !v
	return nil
}

func (b negatedBool) Type() string { return "bool" }

// AddFlags registers --aws-* flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Region, "aws-region", "", "AWS region of the load balancers. Default: AWS_REGION / the shared config, else the instance's region from IMDS.")
	fs.StringVar(&c.EndpointURL, "aws-endpoint-url", "", "Endpoint URL for both the ELBv2 and EC2 APIs, e.g. an emulator. AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 and AWS_ENDPOINT_URL_EC2 work too.")
	fs.StringVar(&c.ClusterName, "aws-cluster-name", "", "Cluster name in the kubernetes.io/cluster/<name> subnet tag used to discover subnets. Default: the cluster ID.")
	fs.StringVar(&c.VPCID, "aws-vpc-id", "", "Only discover subnets in this VPC. Default: the VPC of the tagged subnets.")
	fs.BoolVar(&c.AllowUntaggedSubnets, "aws-allow-untagged-subnets", false, "Let Services name (aws.lb.portico.dev/subnets) subnets without any kubernetes.io/cluster/<name> or portico.dev/cluster tag, in --aws-vpc-id or the cluster's VPC. By default a named subnet must be tagged for this cluster; one tagged for another cluster never is allowed.")
	fs.BoolVar(&c.AllowUntaggedEIPs, "aws-allow-untagged-eips", false, "Let Services name (aws.lb.portico.dev/eip-allocations) Elastic IPs without any kubernetes.io/cluster/<name> or portico.dev/cluster tag. By default a named allocation must be tagged for this cluster; one tagged for another cluster never is allowed.")
	fs.Float64Var(&c.APIQPS, "aws-api-qps", 10, "Client-side limit on AWS API calls per second, retries included.")
	fs.IntVar(&c.APIBurst, "aws-api-burst", 20, "Burst allowed above --aws-api-qps.")
	fs.Var(negatedBool{&c.DisableBackendRules}, "aws-manage-backend-security-group-rules", "Give every load balancer the cluster's backend security group (portico-<cluster-id>-backend) and open the nodes' security groups to it on the node ports, kube-proxy's health port 10256 and any other target port, so health checks and traffic reach the nodes. Set false to manage node security groups yourself (a Service can opt out with aws.lb.portico.dev/manage-backend-security-group-rules: \"false\").")
	fs.Lookup("aws-manage-backend-security-group-rules").NoOptDefVal = "true"
	fs.IntVar(&c.MaxAttempts, "aws-max-attempts", 5, "Attempts per AWS API call by the SDK's standard retryer before Portico requeues the Service.")
}

// Factory returns a providers.Factory bound to c. Credentials come from the
// SDK's default chain (IRSA / EKS Pod Identity, environment, shared config,
// instance profile); they are never logged.
func (c *Config) Factory() providers.Factory {
	return func(ctx context.Context, opts providers.Options) (providers.Provider, error) {
		loaders := []func(*config.LoadOptions) error{
			config.WithEC2IMDSRegion(),
			config.WithRetryer(func() aws.Retryer {
				return retry.NewStandard(func(o *retry.StandardOptions) {
					if c.MaxAttempts > 0 {
						o.MaxAttempts = c.MaxAttempts
					}
				})
			}),
		}
		if c.Region != "" {
			loaders = append(loaders, config.WithRegion(c.Region))
		}
		cfg, err := config.LoadDefaultConfig(ctx, loaders...)
		if err != nil {
			return nil, fmt.Errorf("loading AWS configuration: %w", err)
		}
		return New(Options{
			ClusterID:                        opts.ClusterID,
			ClusterName:                      c.ClusterName,
			VPCID:                            c.VPCID,
			AllowUntaggedSubnets:             c.AllowUntaggedSubnets,
			AllowUntaggedEIPs:                c.AllowUntaggedEIPs,
			DisableBackendSecurityGroupRules: c.DisableBackendRules,
			AWS:                              cfg,
			EndpointURL:                      c.EndpointURL,
			RateLimit:                        rate.Limit(c.APIQPS),
			Burst:                            c.APIBurst,
		})
	}
}
