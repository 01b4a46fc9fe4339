package aws

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/portico-lb/portico/providers"
)

var _ providers.OrphanScanner = (*Provider)(nil)

// ListOwned lists the NLBs, target groups and security groups tagged for
// clusterID. Every Portico name starts with "portico-", so only those
// resources' tags are read.
func (p *Provider) ListOwned(ctx context.Context, clusterID string) ([]providers.Owned, error) {
	var arns []string
	kinds := map[string]string{}
	lbs := elbv2.NewDescribeLoadBalancersPaginator(p.elb, &elbv2.DescribeLoadBalancersInput{})
	for lbs.HasMorePages() {
		pg, err := lbs.NextPage(ctx)
		if err != nil {
			return nil, p.classify("listing load balancers", err)
		}
		for _, lb := range pg.LoadBalancers {
			if strings.HasPrefix(aws.ToString(lb.LoadBalancerName), "portico-") {
				arns = append(arns, aws.ToString(lb.LoadBalancerArn))
				kinds[aws.ToString(lb.LoadBalancerArn)] = KindLoadBalancer
			}
		}
	}
	groups, err := p.groupsByPrefix(ctx, "portico-")
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		arns = append(arns, aws.ToString(g.TargetGroupArn))
		kinds[aws.ToString(g.TargetGroupArn)] = KindTargetGroup
	}
	tags, err := p.describeTags(ctx, arns)
	if err != nil {
		return nil, err
	}
	var out []providers.Owned
	add := func(kind, id string, t map[string]string) {
		if t[providers.TagManagedBy] != providers.ManagedByValue || t[providers.TagCluster] != clusterID {
			return
		}
		if key, ok := providers.ServiceFromMark(clusterID, t[providers.TagService]); ok {
			out = append(out, providers.Owned{Kind: kind, ID: id, Service: key})
		}
	}
	for _, arn := range arns {
		add(kinds[arn], arn, tags[arn])
	}
	sgs := ec2.NewDescribeSecurityGroupsPaginator(p.ec2, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + providers.TagCluster), Values: []string{clusterID}},
		{Name: aws.String("tag:" + providers.TagManagedBy), Values: []string{providers.ManagedByValue}},
	}})
	for sgs.HasMorePages() {
		pg, err := sgs.NextPage(ctx)
		if err != nil {
			return nil, p.classify("listing security groups", err)
		}
		for _, sg := range pg.SecurityGroups {
			add(KindSecurityGroup, aws.ToString(sg.GroupId), ec2TagMap(sg.Tags))
		}
	}
	return out, nil
}

// DeleteOrphan refuses: every AWS resource Portico creates belongs to one
// Service and is removed through Delete.
func (p *Provider) DeleteOrphan(_ context.Context, _ string, o providers.Owned) error {
	return fmt.Errorf("aws: %s %s belongs to a Service; delete it through the Service's cleanup", o.Kind, o.ID)
}

// Fingerprint is the NLB's name; every AWS resource names its Service in tags.
func (p *Provider) Fingerprint(key providers.Key) string { return LoadBalancerName(key) }
