package awsfake

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Test credentials; the fake checks that requests are SigV4-signed, not the key.
const (
	TestAccessKeyID     = "AKIAPORTICOTEST00000"
	TestSecretAccessKey = "portico-fake-secret"
)

// SDKOptions tune the SDK configuration SDKConfig returns.
type SDKOptions struct {
	// MaxAttempts per call (default 3) and MaxBackoff between them (default
	// 5ms, so tests do not sleep).
	MaxAttempts int
	MaxBackoff  time.Duration
	// Timeout bounds each HTTP attempt (default 2s).
	Timeout time.Duration
	// AccessKeyID signs the requests (default TestAccessKeyID); the fake
	// records it with every call, so tests can tell callers apart.
	AccessKeyID string
}

// SDKConfig returns an aws.Config that points the real SDK clients at the
// fake through BaseEndpoint, with static test credentials and a standard
// retryer without client-side retry quota.
func (f *Fake) SDKConfig(o SDKOptions) aws.Config {
	return sdkConfig(f.URL(), f.opts.Region, o)
}

// SDKConfig returns an aws.Config for region that points the real
// CloudWatch client at the fake, as Fake.SDKConfig does for ELBv2 and EC2.
func (c *CloudWatch) SDKConfig(region string, o SDKOptions) aws.Config {
	return sdkConfig(c.URL(), region, o)
}

func sdkConfig(url, region string, o SDKOptions) aws.Config {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.AccessKeyID == "" {
		o.AccessKeyID = TestAccessKeyID
	}
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider(o.AccessKeyID, TestSecretAccessKey, ""),
		HTTPClient:   awshttp.NewBuildableClient().WithTimeout(o.Timeout),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = o.MaxBackoff
				so.RateLimiter = ratelimit.None
			})
		},
	}
}

// Network layout SeedNetwork creates.
const (
	TestVPC = "vpc-0a1b2c3d4e5f60718"
)

// SeedNetwork creates a VPC layout like an EKS cluster's: public subnets
// tagged kubernetes.io/role/elb in zones a, b and c, private subnets tagged
// kubernetes.io/role/internal-elb in zones a and b, all tagged
// kubernetes.io/cluster/<cluster>=shared, and one public subnet in zone a that
// belongs to another cluster. It returns the public and private subnet IDs.
func (f *Fake) SeedNetwork(cluster string) (public, private []string) {
	zone := func(z string) string { return f.opts.Region + z }
	for i, z := range []string{"a", "b", "c"} {
		id := "subnet-0000000000000000" + string(rune('1'+i))
		f.AddSubnet(id, TestVPC, zone(z), map[string]string{"kubernetes.io/role/elb": "1", "kubernetes.io/cluster/" + cluster: "shared"})
		public = append(public, id)
	}
	for i, z := range []string{"a", "b"} {
		id := "subnet-1000000000000000" + string(rune('1'+i))
		f.AddSubnet(id, TestVPC, zone(z), map[string]string{"kubernetes.io/role/internal-elb": "1", "kubernetes.io/cluster/" + cluster: "owned"})
		private = append(private, id)
	}
	f.AddSubnet("subnet-0ff00000000000001", TestVPC, zone("a"), map[string]string{"kubernetes.io/role/elb": "1", "kubernetes.io/cluster/someone-else": "owned"})
	// The node security group of an EKS cluster: tagged for the cluster,
	// admitting only its own members, so a load balancer's health checks
	// reach the nodes only once someone allows them.
	f.mu.Lock()
	f.nodeSG = &SecurityGroup{ID: "sg-0e0de00000000000" + "1", Name: "eks-cluster-sg-" + cluster, VPCID: TestVPC,
		Description: "EKS created security group", Tags: map[string]string{"kubernetes.io/cluster/" + cluster: "owned"}}
	f.nodeSG.Ingress = []Rule{{Protocol: "-1", FromPort: 0, ToPort: 65535, SourceGroup: f.nodeSG.ID}}
	f.sgs[f.nodeSG.ID] = f.nodeSG
	f.mu.Unlock()
	return public, private
}

// NodeSecurityGroup is the ID of the node security group SeedNetwork made,
// or "" before it ran.
func (f *Fake) NodeSecurityGroup() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodeSG == nil {
		return ""
	}
	return f.nodeSG.ID
}

// InstanceID returns a deterministic EC2 instance ID for a node name and
// registers it with the fake so it is a valid target: in zone a, in the node
// security group when SeedNetwork made one.
func (f *Fake) InstanceID(node string) string {
	sum := sha256.Sum256([]byte(node))
	id := "i-" + hex.EncodeToString(sum[:])[:17]
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.instances[id] == nil {
		in := &Instance{ID: id, Zone: f.opts.Region + "a"}
		if f.nodeSG != nil {
			in.SecurityGroups = []string{f.nodeSG.ID}
		}
		f.instances[id] = in
	}
	return id
}
