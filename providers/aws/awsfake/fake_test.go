package awsfake_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/portico-lb/portico/providers/aws/awsfake"
)

func clients(t *testing.T, o awsfake.Options) (*awsfake.Fake, *elbv2.Client, *ec2.Client) {
	t.Helper()
	f := awsfake.New(o)
	t.Cleanup(f.Close)
	f.SeedNetwork("c")
	cfg := f.SDKConfig(awsfake.SDKOptions{MaxAttempts: 1})
	return f, elbv2.NewFromConfig(cfg), ec2.NewFromConfig(cfg)
}

func createGroup(t *testing.T, c *elbv2.Client, name string) *elbtypes.TargetGroup {
	t.Helper()
	out, err := c.CreateTargetGroup(t.Context(), &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(30080),
		VpcId: aws.String(awsfake.TestVPC), TargetType: elbtypes.TargetTypeEnumInstance,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &out.TargetGroups[0]
}

func TestTypedErrorsAndIdempotentCreate(t *testing.T) {
	f, c, _ := clients(t, awsfake.Options{})
	_, err := c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{Names: []string{"missing"}})
	var nf *elbtypes.LoadBalancerNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("describing a missing load balancer: got %T %v, want the SDK's LoadBalancerNotFoundException", err, err)
	}
	in := &elbv2.CreateLoadBalancerInput{
		Name: aws.String("lb"), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: []string{"subnet-00000000000000001"},
		Tags: []elbtypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}},
	}
	first, err := c.CreateLoadBalancer(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if arn := aws.ToString(first.LoadBalancers[0].LoadBalancerArn); !strings.HasPrefix(arn, "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/lb/") {
		t.Errorf("ARN %s", arn)
	}
	again, err := c.CreateLoadBalancer(t.Context(), in)
	if err != nil || aws.ToString(again.LoadBalancers[0].LoadBalancerArn) != aws.ToString(first.LoadBalancers[0].LoadBalancerArn) {
		t.Fatalf("identical create: %v, %v; want the same load balancer", again, err)
	}
	in.Scheme = elbtypes.LoadBalancerSchemeEnumInternal
	_, err = c.CreateLoadBalancer(t.Context(), in)
	var dup *elbtypes.DuplicateLoadBalancerNameException
	if !errors.As(err, &dup) {
		t.Fatalf("conflicting create: got %v, want DuplicateLoadBalancerName", err)
	}
	if n := f.MutatingCalls(); n != 3 {
		t.Errorf("mutating calls %d, want 3", n)
	}
}

func TestTargetGroupInUseAndPagination(t *testing.T) {
	_, c, _ := clients(t, awsfake.Options{MaxPageSize: 2})
	lb, err := c.CreateLoadBalancer(t.Context(), &elbv2.CreateLoadBalancerInput{
		Name: aws.String("lb"), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: []string{"subnet-00000000000000001"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var groups []*elbtypes.TargetGroup
	for i := range 5 {
		groups = append(groups, createGroup(t, c, fmt.Sprintf("tg-%d", i)))
	}
	_, err = c.CreateListener(t.Context(), &elbv2.CreateListenerInput{
		LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn, Port: aws.Int32(80), Protocol: elbtypes.ProtocolEnumTcp,
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: groups[0].TargetGroupArn}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteTargetGroup(t.Context(), &elbv2.DeleteTargetGroupInput{TargetGroupArn: groups[0].TargetGroupArn})
	var inUse *elbtypes.ResourceInUseException
	if !errors.As(err, &inUse) {
		t.Fatalf("deleting a group a listener uses: got %v, want ResourceInUse", err)
	}
	pages := elbv2.NewDescribeTargetGroupsPaginator(c, &elbv2.DescribeTargetGroupsInput{})
	n, calls := 0, 0
	for pages.HasMorePages() {
		pg, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		calls++
		n += len(pg.TargetGroups)
	}
	if n != 5 || calls != 3 {
		t.Errorf("paginated %d groups in %d pages, want 5 in 3", n, calls)
	}
}

func TestEventualConsistency(t *testing.T) {
	f, c, _ := clients(t, awsfake.Options{Consistency: 100 * time.Millisecond})
	createGroup(t, c, "fresh")
	_, err := c.DescribeTargetGroups(t.Context(), &elbv2.DescribeTargetGroupsInput{Names: []string{"fresh"}})
	if !errors.As(err, new(*elbtypes.TargetGroupNotFoundException)) {
		t.Fatalf("describe right after create: got %v, want TargetGroupNotFound", err)
	}
	f.WaitSettled(t.Context())
	if _, err := c.DescribeTargetGroups(t.Context(), &elbv2.DescribeTargetGroupsInput{Names: []string{"fresh"}}); err != nil {
		t.Fatalf("describe after settling: %v", err)
	}
}

func TestTagFiltersAndDependencyViolation(t *testing.T) {
	f, c, e := clients(t, awsfake.Options{Consistency: 50 * time.Millisecond})
	sg, err := e.CreateSecurityGroup(t.Context(), &ec2.CreateSecurityGroupInput{
		GroupName: aws.String("mine"), Description: aws.String("d"), VpcId: aws.String(awsfake.TestVPC),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup,
			Tags: []ec2types.Tag{{Key: aws.String("owner"), Value: aws.String("me")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.PlantSecurityGroup("theirs", awsfake.TestVPC, map[string]string{"owner": "them"})
	f.WaitSettled(t.Context())
	out, err := e.DescribeSecurityGroups(t.Context(), &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:owner"), Values: []string{"me"}}}})
	if err != nil || len(out.SecurityGroups) != 1 || aws.ToString(out.SecurityGroups[0].GroupId) != aws.ToString(sg.GroupId) {
		t.Fatalf("tag filter: %+v, %v; want only %s", out, err, aws.ToString(sg.GroupId))
	}
	subnets, err := e.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{"kubernetes.io/role/internal-elb"}}}})
	if err != nil || len(subnets.Subnets) != 2 {
		t.Fatalf("tag-key filter: %d subnets, %v; want 2", len(subnets.Subnets), err)
	}
	lb, err := c.CreateLoadBalancer(t.Context(), &elbv2.CreateLoadBalancerInput{
		Name: aws.String("lb"), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: []string{"subnet-00000000000000001"},
		SecurityGroups: []string{aws.ToString(sg.GroupId)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteLoadBalancer(t.Context(), &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn}); err != nil {
		t.Fatal(err)
	}
	_, err = e.DeleteSecurityGroup(t.Context(), &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "DependencyViolation" {
		t.Fatalf("deleting the group right after its load balancer: got %v, want DependencyViolation", err)
	}
	f.WaitSettled(t.Context())
	if _, err := e.DeleteSecurityGroup(t.Context(), &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId}); err != nil {
		t.Fatalf("deleting after the interfaces were released: %v", err)
	}
}

func TestFaultsAndSigning(t *testing.T) {
	f, c, e := clients(t, awsfake.Options{})
	f.InjectThrottle(1)
	_, err := c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "Throttling" {
		t.Fatalf("ELBv2 throttle: got %v", err)
	}
	f.InjectThrottle(1)
	_, err = e.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "RequestLimitExceeded" {
		t.Fatalf("EC2 throttle: got %v", err)
	}
	f.InjectServerError(1)
	_, err = c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InternalFailure" {
		t.Fatalf("5xx: got %v", err)
	}
	f.CrashAfter(0)
	if _, err := c.DeleteLoadBalancer(t.Context(), &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String("arn:x")}); err == nil {
		t.Fatal("a mutating call succeeded after the crash point")
	}
	if _, err := c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{}); err == nil {
		t.Fatal("a read succeeded after the crash")
	}
	f.Recover()
	// An unsigned request is refused, as AWS does.
	resp, err := http.PostForm(f.URL(), url.Values{"Action": {"DescribeLoadBalancers"}, "Version": {awsfake.ELBv2Version}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned request: status %d, want 403", resp.StatusCode)
	}
}
