// Package e2e holds Portico's checks against a real AWS account: the
// scenario behind `make e2e-aws` (e2e_test.go) and the leftover checker,
// which lists everything that still carries a run's ownership marks.
package e2e

import (
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/portico-lb/portico/providers"
	awsp "github.com/portico-lb/portico/providers/aws"
)

// Leftover is one resource that still carries the cluster's marks.
type Leftover struct {
	Kind, ID string
	Tags     map[string]string
}

func (l Leftover) String() string { return l.Kind + " " + l.ID }

// Leftovers lists the load balancers, target groups, listeners' owners and
// security groups tagged portico.dev/cluster=clusterID and
// portico.dev/managed-by=portico. With shared, the cluster-wide backend
// security group (which Portico keeps on purpose) is listed too.
func Leftovers(ctx context.Context, elb awsp.ELBAPI, ec awsp.EC2API, clusterID string, shared bool) ([]Leftover, error) {
	ours := func(tags map[string]string) bool {
		return tags[providers.TagCluster] == clusterID && tags[providers.TagManagedBy] == providers.ManagedByValue &&
			(shared || tags[awsp.TagRole] != awsp.RoleBackend)
	}
	var arns []string
	kinds := map[string]string{}
	lbs := elbv2.NewDescribeLoadBalancersPaginator(elb, &elbv2.DescribeLoadBalancersInput{})
	for lbs.HasMorePages() {
		pg, err := lbs.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing load balancers: %w", err)
		}
		for _, lb := range pg.LoadBalancers {
			arns = append(arns, aws.ToString(lb.LoadBalancerArn))
			kinds[aws.ToString(lb.LoadBalancerArn)] = "loadBalancer"
		}
	}
	tgs := elbv2.NewDescribeTargetGroupsPaginator(elb, &elbv2.DescribeTargetGroupsInput{})
	for tgs.HasMorePages() {
		pg, err := tgs.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing target groups: %w", err)
		}
		for _, g := range pg.TargetGroups {
			arns = append(arns, aws.ToString(g.TargetGroupArn))
			kinds[aws.ToString(g.TargetGroupArn)] = "targetGroup"
		}
	}
	var out []Leftover
	for start := 0; start < len(arns); start += 20 {
		batch := arns[start:min(start+20, len(arns))]
		tags, err := elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: batch})
		if err != nil {
			return nil, fmt.Errorf("reading tags: %w", err)
		}
		for _, d := range tags.TagDescriptions {
			m := map[string]string{}
			for _, t := range d.Tags {
				m[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if ours(m) {
				arn := aws.ToString(d.ResourceArn)
				out = append(out, Leftover{Kind: kinds[arn], ID: arn, Tags: m})
			}
		}
	}
	sgs := ec2.NewDescribeSecurityGroupsPaginator(ec, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + providers.TagCluster), Values: []string{clusterID}},
	}})
	for sgs.HasMorePages() {
		pg, err := sgs.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing security groups: %w", err)
		}
		for _, g := range pg.SecurityGroups {
			m := map[string]string{}
			for _, t := range g.Tags {
				m[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if ours(m) {
				out = append(out, Leftover{Kind: "securityGroup", ID: aws.ToString(g.GroupId), Tags: m})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].ID < out[j].Kind+out[j].ID })
	return out, nil
}
