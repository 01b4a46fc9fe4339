package aws

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/portico-lb/portico/providers"
)

func TestNamesAreDeterministicAndShort(t *testing.T) {
	long := providers.Key{ClusterID: strings.Repeat("c", 200), Namespace: strings.Repeat("n", 63), Name: strings.Repeat("s", 63)}
	other := providers.Key{ClusterID: "c", Namespace: "ns", Name: "svc"}
	for _, k := range []providers.Key{long, other} {
		lb := LoadBalancerName(k)
		if len(lb) > 32 || lb != LoadBalancerName(k) || strings.HasPrefix(lb, "internal-") {
			t.Errorf("load balancer name %q: want a stable name of at most 32 characters", lb)
		}
		for _, proto := range []elbtypes.ProtocolEnum{elbtypes.ProtocolEnumTcp, elbtypes.ProtocolEnumUdp, elbtypes.ProtocolEnumTcpUdp} {
			for _, tt := range []elbtypes.TargetTypeEnum{elbtypes.TargetTypeEnumInstance, elbtypes.TargetTypeEnumIp} {
				n := TargetGroupName(k, proto, 65535, tt)
				if len(n) > 32 || !strings.HasPrefix(n, targetGroupPrefix(k)) {
					t.Errorf("target group name %q: want at most 32 characters under prefix %q", n, targetGroupPrefix(k))
				}
			}
		}
	}
	if LoadBalancerName(long) == LoadBalancerName(other) {
		t.Error("different keys share a load balancer name")
	}
	if TargetGroupName(other, elbtypes.ProtocolEnumTcp, 80, elbtypes.TargetTypeEnumIp) == TargetGroupName(other, elbtypes.ProtocolEnumTcp, 80, elbtypes.TargetTypeEnumInstance) {
		t.Error("ip and instance target groups share a name")
	}
}

func TestInstanceID(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"aws:///us-east-1a/i-0123456789abcdef0", "i-0123456789abcdef0", true},
		{"aws://us-east-1a/i-0123abcd", "i-0123abcd", true},
		{"aws:///i-0123456789abcdef0", "i-0123456789abcdef0", true},
		{"gce://project/zone/vm", "", false},
		{"aws:///us-east-1a/fargate-ip-10-0-0-1", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := InstanceID(tc.in)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("InstanceID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func desiredFor(ports ...providers.Port) *providers.LoadBalancer {
	return &providers.LoadBalancer{
		Key:   providers.Key{ClusterID: "c", Namespace: "ns", Name: "svc"},
		Ports: ports,
		Nodes: []providers.Node{
			{Name: "a", ProviderID: "aws:///us-east-1a/i-0000000000000000a"},
			{Name: "fargate", ProviderID: "aws:///us-east-1a/fargate-x"},
			{Name: "b", ProviderID: "aws:///us-east-1b/i-0000000000000000b"},
		},
		TrafficPolicy: providers.TrafficPolicyCluster,
	}
}

func TestBuildPlanErrors(t *testing.T) {
	cert := "arn:aws:acm:us-east-1:123456789012:certificate/abc"
	tests := []struct {
		name   string
		d      *providers.LoadBalancer
		a      Annotations
		reason string
	}{
		{"sctp", desiredFor(providers.Port{Protocol: providers.SCTP, Port: 9, NodePort: 30009}), Annotations{}, "UnsupportedProtocol"},
		{"no node port", desiredFor(providers.Port{Protocol: providers.TCP, Port: 80}), Annotations{}, "NoNodePort"},
		{"tcp and udp with different node ports", desiredFor(
			providers.Port{Protocol: providers.TCP, Port: 53, NodePort: 30053},
			providers.Port{Protocol: providers.UDP, Port: 53, NodePort: 30054}), Annotations{}, "MixedProtocolPorts"},
		{"tls on a tcp+udp port", desiredFor(
			providers.Port{Protocol: providers.TCP, Port: 53, NodePort: 30053},
			providers.Port{Protocol: providers.UDP, Port: 53, NodePort: 30053}), Annotations{SSLCert: cert, SSLPorts: []string{"53"}}, "InvalidAnnotation"},
		{"ssl port the service lacks", desiredFor(providers.Port{Name: "http", Protocol: providers.TCP, Port: 80, NodePort: 30080}),
			Annotations{SSLCert: cert, SSLPorts: []string{"https"}}, "InvalidAnnotation"},
		{"eip on internal", func() *providers.LoadBalancer {
			d := desiredFor(providers.Port{Protocol: providers.TCP, Port: 80, NodePort: 30080})
			d.Scheme = providers.SchemeInternal
			return d
		}(), Annotations{EIPAllocations: []string{"eipalloc-0123456789abcdef0"}}, "InvalidAnnotation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := buildPlan(tc.d, tc.a)
			var ce *providers.ConfigError
			if !errors.As(err, &ce) || ce.Reason != tc.reason {
				t.Fatalf("got %v, want ConfigError %s", err, tc.reason)
			}
		})
	}
}

func TestBuildPlan(t *testing.T) {
	d := desiredFor(
		providers.Port{Name: "dns", Protocol: providers.TCP, Port: 53, NodePort: 30053},
		providers.Port{Name: "dns-udp", Protocol: providers.UDP, Port: 53, NodePort: 30053},
		providers.Port{Name: "https", Protocol: providers.TCP, Port: 443, NodePort: 30443},
	)
	d.DualStack = true
	pl, err := buildPlan(d, Annotations{SSLCert: "arn:aws:acm:us-east-1:123456789012:certificate/abc"})
	if err != nil {
		t.Fatal(err)
	}
	var ls []string
	for _, l := range pl.listeners {
		ls = append(ls, fmt.Sprintf("%d/%s->%s", l.port, l.protocol, strings.TrimPrefix(l.group, targetGroupPrefix(d.Key))))
	}
	if want := []string{"53/TCP_UDP->tu53-i", "443/TLS->tcp443-i"}; !slices.Equal(ls, want) {
		t.Errorf("listeners %v, want %v", ls, want)
	}
	if pl.ipType != elbtypes.IpAddressTypeDualstack {
		t.Errorf("ip type %s, want dualstack", pl.ipType)
	}
	if !slices.Equal(pl.skipped, []string{"fargate"}) {
		t.Errorf("skipped %v, want the node without an instance ID", pl.skipped)
	}
	g := pl.groups[TargetGroupName(d.Key, elbtypes.ProtocolEnumTcpUdp, 53, elbtypes.TargetTypeEnumInstance)]
	if g == nil || len(g.targets) != 2 || g.targets[0].port != 30053 || g.health.protocol != "HTTP" || g.health.port != kubeProxyHealthPort {
		t.Fatalf("group for 53: %+v", g)
	}
	if tls := pl.groups[TargetGroupName(d.Key, elbtypes.ProtocolEnumTcp, 443, elbtypes.TargetTypeEnumInstance)]; tls == nil || tls.health.protocol != "TCP" || tls.health.port != trafficPort {
		t.Errorf("TCP group health check: %+v, want TCP on the traffic port", tls)
	}
	var rules []string
	for _, r := range pl.rules {
		rules = append(rules, ruleKey(r))
	}
	want := []string{"tcp/00053/0.0.0.0/0", "tcp/00053/::/0", "tcp/00443/0.0.0.0/0", "tcp/00443/::/0", "udp/00053/0.0.0.0/0", "udp/00053/::/0"}
	if !slices.Equal(rules, want) {
		t.Errorf("rules %v, want %v", rules, want)
	}

	// Source ranges are normalised to their network address.
	d.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16")}
	pl, _ = buildPlan(d, Annotations{})
	if pl.rules[0].cidr != "10.1.0.0/16" {
		t.Errorf("rule CIDR %s, want 10.1.0.0/16", pl.rules[0].cidr)
	}
}

func TestPickSubnets(t *testing.T) {
	sn := func(id, vpc, zone string, tags ...string) ec2types.Subnet {
		s := ec2types.Subnet{SubnetId: aws.String(id), VpcId: aws.String(vpc), AvailabilityZone: aws.String(zone)}
		for i := 0; i+1 < len(tags); i += 2 {
			s.Tags = append(s.Tags, ec2types.Tag{Key: aws.String(tags[i]), Value: aws.String(tags[i+1])})
		}
		return s
	}
	tests := []struct {
		name    string
		subnets []ec2types.Subnet
		vpcFlag string
		want    []string
		reason  string
	}{
		{"one per zone, ours first", []ec2types.Subnet{
			sn("subnet-a1", "vpc-1", "az-a", TagRoleELB, "1"),
			sn("subnet-a2", "vpc-1", "az-a", TagRoleELB, "1", TagClusterPrefix+"me", "shared"),
			sn("subnet-b1", "vpc-1", "az-b", TagRoleELB, "1"),
		}, "", []string{"subnet-a2", "subnet-b1"}, ""},
		{"another cluster's subnet is skipped", []ec2types.Subnet{
			sn("subnet-a1", "vpc-1", "az-a", TagRoleELB, "1", TagClusterPrefix+"other", "owned"),
			sn("subnet-b1", "vpc-1", "az-b", TagRoleELB, "1"),
		}, "", []string{"subnet-b1"}, ""},
		{"opted out", []ec2types.Subnet{sn("subnet-a1", "vpc-1", "az-a", TagRoleELB, "0")}, "", nil, "NoSubnets"},
		{"none", nil, "", nil, "NoSubnets"},
		{"two vpcs, ours decides", []ec2types.Subnet{
			sn("subnet-a1", "vpc-1", "az-a", TagRoleELB, "1"),
			sn("subnet-b1", "vpc-2", "az-b", TagRoleELB, "1", TagClusterPrefix+"me", "owned"),
		}, "", []string{"subnet-b1"}, ""},
		{"two vpcs, ambiguous", []ec2types.Subnet{
			sn("subnet-a1", "vpc-1", "az-a", TagRoleELB, "1"), sn("subnet-b1", "vpc-2", "az-b", TagRoleELB, "1"),
		}, "", nil, "AmbiguousSubnets"},
		{"vpc flag", []ec2types.Subnet{
			sn("subnet-a1", "vpc-1", "az-a", TagRoleELB, "1"), sn("subnet-b1", "vpc-2", "az-b", TagRoleELB, "1"),
		}, "vpc-1", []string{"subnet-a1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := pickSubnets(tc.subnets, TagRoleELB, "me", tc.vpcFlag)
			if tc.reason != "" {
				var ce *providers.ConfigError
				if !errors.As(err, &ce) || ce.Reason != tc.reason {
					t.Fatalf("got %v, %v; want ConfigError %s", got, err, tc.reason)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// FuzzInstanceID: a node's providerID never yields anything but a
// well-formed EC2 instance ID, and every such ID round-trips.
func FuzzInstanceID(f *testing.F) {
	f.Add("aws:///eu-west-1a/i-0123456789abcdef0")
	f.Add("aws:///i-deadbeef")
	f.Add("gce://p/z/i-0123456789abcdef0")
	f.Add("aws://")
	f.Fuzz(func(t *testing.T, providerID string) {
		id, ok := InstanceID(providerID)
		if !ok {
			return
		}
		if !strings.HasPrefix(providerID, "aws://") || !instanceIDRE.MatchString(id) || !strings.HasSuffix(providerID, id) {
			t.Fatalf("InstanceID(%q) = %q", providerID, id)
		}
		if again, ok := InstanceID("aws:///zone-a/" + id); !ok || again != id {
			t.Fatalf("round trip of %q: %q %v", id, again, ok)
		}
	})
}
