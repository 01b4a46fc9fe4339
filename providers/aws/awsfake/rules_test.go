package awsfake_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/portico-lb/portico/internal/fault"
	"github.com/portico-lb/portico/providers/aws/awsfake"
)

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func tags(kv ...string) []elbtypes.Tag {
	var out []elbtypes.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, elbtypes.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return out
}

// TestRefusesWhatAWSRefuses sends, through the real SDK clients, requests
// the real ELBv2 and EC2 APIs reject, and checks the error code for each.
func TestRefusesWhatAWSRefuses(t *testing.T) {
	many := func(n int) []elbtypes.Tag {
		var kv []string
		for i := range n {
			kv = append(kv, fmt.Sprintf("k%d", i), "v")
		}
		return tags(kv...)
	}
	lb := func(name string, subnets []string, tg []elbtypes.Tag) *elbv2.CreateLoadBalancerInput {
		return &elbv2.CreateLoadBalancerInput{Name: aws.String(name), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: subnets, Tags: tg}
	}
	pub := []string{"subnet-00000000000000001"}
	for _, tc := range []struct {
		name string
		in   *elbv2.CreateLoadBalancerInput
		want string
	}{
		{"name of 33 characters", lb(strings.Repeat("a", 33), pub, nil), "ValidationError"},
		{"name ending with a hyphen", lb("web-", pub, nil), "ValidationError"},
		{"name starting with a hyphen", lb("-web", pub, nil), "ValidationError"},
		{"name with an underscore", lb("we_b", pub, nil), "ValidationError"},
		{"name starting with internal-", lb("internal-web", pub, nil), "ValidationError"},
		{"subnet that does not exist", lb("web", []string{"subnet-0123456789abcdef0"}, nil), "SubnetNotFound"},
		{"two subnets in one zone", lb("web", []string{"subnet-00000000000000001", "subnet-10000000000000001"}, nil), "InvalidConfigurationRequest"},
		{"tag key of 129 characters", lb("web", pub, tags(strings.Repeat("k", 129), "v")), "ValidationError"},
		{"tag value of 257 characters", lb("web", pub, tags("k", strings.Repeat("v", 257))), "ValidationError"},
		{"tag key with aws: prefix", lb("web", pub, tags("aws:owner", "me")), "ValidationError"},
		{"tag key with a comma", lb("web", pub, tags("a,b", "v")), "ValidationError"},
		{"51 tags", lb("web", pub, many(51)), "TooManyTags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c, _ := clients(t, awsfake.Options{})
			_, err := c.CreateLoadBalancer(t.Context(), tc.in)
			if got := code(err); got != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	t.Run("valid name and 50 tags of maximum length", func(t *testing.T) {
		_, c, _ := clients(t, awsfake.Options{})
		tg := many(49)
		tg = append(tg, tags(strings.Repeat("k", 128), strings.Repeat("v", 256))...)
		if _, err := c.CreateLoadBalancer(t.Context(), lb(strings.Repeat("a", 32), pub, tg)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("target group name of 33 characters", func(t *testing.T) {
		_, c, _ := clients(t, awsfake.Options{})
		_, err := c.CreateTargetGroup(t.Context(), &elbv2.CreateTargetGroupInput{
			Name: aws.String(strings.Repeat("t", 33)), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(30080), VpcId: aws.String(awsfake.TestVPC),
		})
		if code(err) != "ValidationError" {
			t.Fatalf("got %v, want ValidationError", err)
		}
	})
	t.Run("security group tag with aws: prefix", func(t *testing.T) {
		_, _, e := clients(t, awsfake.Options{})
		_, err := e.CreateSecurityGroup(t.Context(), &ec2.CreateSecurityGroupInput{
			GroupName: aws.String("g"), Description: aws.String("d"), VpcId: aws.String(awsfake.TestVPC),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{{Key: aws.String("aws:x"), Value: aws.String("v")}}}},
		})
		if code(err) != "InvalidParameterValue" {
			t.Fatalf("got %v, want InvalidParameterValue", err)
		}
	})
}

func securityGroup(t *testing.T, e *ec2.Client, name string) string {
	t.Helper()
	out, err := e.CreateSecurityGroup(t.Context(), &ec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String("d"), VpcId: aws.String(awsfake.TestVPC)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.GroupId)
}

func TestSecurityGroupRuleQuotaAndReferences(t *testing.T) {
	f, _, e := clients(t, awsfake.Options{})
	sg := securityGroup(t, e, "quota")
	var perms []ec2types.IpPermission
	for i := range 60 {
		perms = append(perms, ec2types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(int32(1000 + i)), ToPort: aws.Int32(int32(1000 + i)),
			IpRanges: []ec2types.IpRange{{CidrIp: aws.String("10.0.0.0/8")}}})
	}
	if _, err := e.AuthorizeSecurityGroupIngress(t.Context(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: perms}); err != nil {
		t.Fatalf("60 rules: %v", err)
	}
	_, err := e.AuthorizeSecurityGroupIngress(t.Context(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: []ec2types.IpPermission{{
		IpProtocol: aws.String("udp"), FromPort: aws.Int32(53), ToPort: aws.Int32(53), IpRanges: []ec2types.IpRange{{CidrIp: aws.String("10.0.0.0/8")}}}}})
	if code(err) != "RulesPerSecurityGroupLimitExceeded" {
		t.Fatalf("61st rule: got %v, want RulesPerSecurityGroupLimitExceeded", err)
	}

	// A group referenced by another group's rule cannot be deleted.
	src := securityGroup(t, e, "source")
	node := f.NodeSecurityGroup()
	ref := []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(0), ToPort: aws.Int32(65535), UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(src)}}}}
	if _, err := e.AuthorizeSecurityGroupIngress(t.Context(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(node), IpPermissions: ref}); err != nil {
		t.Fatal(err)
	}
	got, err := e.DescribeSecurityGroups(t.Context(), &ec2.DescribeSecurityGroupsInput{GroupIds: []string{node}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range got.SecurityGroups[0].IpPermissions {
		for _, g := range p.UserIdGroupPairs {
			found = found || aws.ToString(g.GroupId) == src && aws.ToInt32(p.ToPort) == 65535
		}
	}
	if !found {
		t.Fatalf("node group rules %+v lack the reference to %s", got.SecurityGroups[0].IpPermissions, src)
	}
	_, err = e.DeleteSecurityGroup(t.Context(), &ec2.DeleteSecurityGroupInput{GroupId: aws.String(src)})
	if code(err) != "DependencyViolation" {
		t.Fatalf("deleting a referenced group: got %v, want DependencyViolation", err)
	}
	if _, err := e.RevokeSecurityGroupIngress(t.Context(), &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(node), IpPermissions: ref}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.DeleteSecurityGroup(t.Context(), &ec2.DeleteSecurityGroupInput{GroupId: aws.String(src)}); err != nil {
		t.Fatalf("deleting once unreferenced: %v", err)
	}
}

func TestTargetQuotasAndGroupInUse(t *testing.T) {
	f, c, _ := clients(t, awsfake.Options{TargetsPerZone: 3, TargetsPerGroup: 4})
	out, err := c.CreateLoadBalancer(t.Context(), &elbv2.CreateLoadBalancerInput{Name: aws.String("lb"), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: []string{"subnet-00000000000000001"}})
	if err != nil {
		t.Fatal(err)
	}
	lbARN := out.LoadBalancers[0].LoadBalancerArn
	g1, g2 := createGroup(t, c, "g1"), createGroup(t, c, "g2")
	reg := func(g *elbtypes.TargetGroup, nodes ...string) error {
		var ts []elbtypes.TargetDescription
		for _, n := range nodes {
			ts = append(ts, elbtypes.TargetDescription{Id: aws.String(f.InstanceID(n))})
		}
		_, err := c.RegisterTargets(t.Context(), &elbv2.RegisterTargetsInput{TargetGroupArn: g.TargetGroupArn, Targets: ts})
		return err
	}
	if err := reg(g1, "a", "b", "c", "d", "e"); code(err) != "TooManyTargets" {
		t.Fatalf("5 targets in a group of at most 4: got %v, want TooManyTargets", err)
	}
	if err := reg(g1, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := reg(g2, "a", "b"); err != nil {
		t.Fatal(err) // not attached: no zone count yet
	}
	listen := func(port int32, g *elbtypes.TargetGroup) error {
		_, err := c.CreateListener(t.Context(), &elbv2.CreateListenerInput{LoadBalancerArn: lbARN, Port: aws.Int32(port), Protocol: elbtypes.ProtocolEnumTcp,
			DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: g.TargetGroupArn}}})
		return err
	}
	if err := listen(80, g1); err != nil {
		t.Fatal(err)
	}
	// A target registered in two groups counts twice: 4 in zone a > 3.
	if err := listen(443, g2); code(err) != "TooManyTargets" {
		t.Fatalf("attaching a second group of the same nodes: got %v, want TooManyTargets", err)
	}
	if err := reg(g1, "c", "d"); code(err) != "TooManyTargets" {
		t.Fatalf("4 targets in one zone of an attached group: got %v, want TooManyTargets", err)
	}
	_, err = c.DeleteTargetGroup(t.Context(), &elbv2.DeleteTargetGroupInput{TargetGroupArn: g1.TargetGroupArn})
	if code(err) != "ResourceInUse" {
		t.Fatalf("deleting a group a listener uses: got %v, want ResourceInUse", err)
	}
}

// TestTargetsTurnHealthyAfterHealthChecks: a registered target is "initial"
// for interval x healthy threshold, then "unhealthy" while the node's
// security group keeps the load balancer out, "healthy" once it admits the
// load balancer's security group.
func TestTargetsTurnHealthyAfterHealthChecks(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f, c, e := clients(t, awsfake.Options{Clock: func() time.Time { return now }, Second: time.Second})
	lbSG := securityGroup(t, e, "lb")
	out, err := c.CreateLoadBalancer(t.Context(), &elbv2.CreateLoadBalancerInput{Name: aws.String("lb"), Type: elbtypes.LoadBalancerTypeEnumNetwork,
		Subnets: []string{"subnet-00000000000000001"}, SecurityGroups: []string{lbSG}})
	if err != nil {
		t.Fatal(err)
	}
	lb := out.LoadBalancers[0]
	if lb.State == nil || lb.State.Code != elbtypes.LoadBalancerStateEnumProvisioning {
		t.Fatalf("new load balancer state %+v, want provisioning", lb.State)
	}
	tg, err := c.CreateTargetGroup(t.Context(), &elbv2.CreateTargetGroupInput{Name: aws.String("g"), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(30080),
		VpcId: aws.String(awsfake.TestVPC), HealthCheckIntervalSeconds: aws.Int32(10), HealthyThresholdCount: aws.Int32(3)})
	if err != nil {
		t.Fatal(err)
	}
	arn := tg.TargetGroups[0].TargetGroupArn
	if _, err := c.CreateListener(t.Context(), &elbv2.CreateListenerInput{LoadBalancerArn: lb.LoadBalancerArn, Port: aws.Int32(80), Protocol: elbtypes.ProtocolEnumTcp,
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: arn}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterTargets(t.Context(), &elbv2.RegisterTargetsInput{TargetGroupArn: arn, Targets: []elbtypes.TargetDescription{{Id: aws.String(f.InstanceID("n1"))}}}); err != nil {
		t.Fatal(err)
	}
	state := func() elbtypes.TargetHealthStateEnum {
		out, err := c.DescribeTargetHealth(t.Context(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: arn})
		if err != nil || len(out.TargetHealthDescriptions) != 1 {
			t.Fatalf("%v %+v", err, out)
		}
		return out.TargetHealthDescriptions[0].TargetHealth.State
	}
	now = now.Add(29 * time.Second)
	if s := state(); s != elbtypes.TargetHealthStateEnumInitial {
		t.Fatalf("after 29s of 3 checks 10s apart: %s, want initial", s)
	}
	now = now.Add(2 * time.Second)
	if s := state(); s != elbtypes.TargetHealthStateEnumUnhealthy {
		t.Fatalf("node group closed to the load balancer: %s, want unhealthy", s)
	}
	if _, err := e.AuthorizeSecurityGroupIngress(t.Context(), &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(f.NodeSecurityGroup()),
		IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(30000), ToPort: aws.Int32(32767), UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(lbSG)}}}}}); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != elbtypes.TargetHealthStateEnumHealthy {
		t.Fatalf("node group open to the load balancer's group: %s, want healthy", s)
	}
	got, err := c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{Names: []string{"lb"}})
	if err != nil || got.LoadBalancers[0].State.Code != elbtypes.LoadBalancerStateEnumActive {
		t.Fatalf("after 31s: %v %+v, want active", err, got)
	}
}

// TestSharedFaultVocabulary drives the fake through internal/fault and
// checks each kind's AWS wire shape, and a failed creation operation.
func TestSharedFaultVocabulary(t *testing.T) {
	f, c, e := clients(t, awsfake.Options{Second: -1})
	inj := f.Faults()
	status := func(err error) int {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			return re.HTTPStatusCode()
		}
		return 0
	}
	for _, tc := range []struct {
		kind       fault.Kind
		ec2        bool
		wantCode   string
		wantStatus int
	}{
		{fault.Throttle, false, "Throttling", http.StatusBadRequest},
		{fault.Throttle, true, "RequestLimitExceeded", http.StatusServiceUnavailable},
		{fault.ServerError, false, "InternalFailure", http.StatusInternalServerError},
		{fault.ServerError, true, "InternalError", http.StatusInternalServerError},
		{fault.Unavailable, false, "ServiceUnavailable", http.StatusServiceUnavailable},
	} {
		inj.Add(fault.Rule{Kind: tc.kind, Times: 1})
		var err error
		if tc.ec2 {
			_, err = e.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{})
		} else {
			_, err = c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{})
		}
		if code(err) != tc.wantCode || status(err) != tc.wantStatus {
			t.Errorf("%s (ec2 %v): got %q %d, want %s %d", tc.kind, tc.ec2, code(err), status(err), tc.wantCode, tc.wantStatus)
		}
	}
	if st := inj.Stats(); st.Injected[fault.Throttle] != 2 || st.Calls != 5 {
		t.Errorf("stats %+v, want 2 throttles in 5 calls", st)
	}
	inj.FailOperations(fault.OpRule{Kind: fault.OpInternal, Times: 1, Op: "CreateLoadBalancer"})
	if _, err := c.CreateLoadBalancer(t.Context(), &elbv2.CreateLoadBalancerInput{Name: aws.String("lb"), Type: elbtypes.LoadBalancerTypeEnumNetwork, Subnets: []string{"subnet-00000000000000001"}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.DescribeLoadBalancers(t.Context(), &elbv2.DescribeLoadBalancersInput{Names: []string{"lb"}})
	if err != nil || got.LoadBalancers[0].State.Code != elbtypes.LoadBalancerStateEnumFailed {
		t.Fatalf("%v %+v, want a failed load balancer", err, got)
	}
}
