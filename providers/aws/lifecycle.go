package aws

import (
	"context"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/providers"
)

// Resource kinds reported in Status.Resources.
const (
	KindLoadBalancer  = "loadBalancer"
	KindListener      = "listener"
	KindTargetGroup   = "targetGroup"
	KindSecurityGroup = "securityGroup"
)

// Observe implements providers.Provider. It changes nothing.
func (p *Provider) Observe(ctx context.Context, key providers.Key) (*providers.Status, error) {
	name := LoadBalancerName(key)
	lb, err := p.findLoadBalancer(ctx, name)
	if err != nil {
		return nil, err
	}
	if lb == nil {
		return nil, providers.ErrNotFound
	}
	lbARN := aws.ToString(lb.LoadBalancerArn)
	tags, err := p.describeTags(ctx, []string{lbARN})
	if err != nil {
		return nil, err
	}
	if !providers.Owns(tags[lbARN], key) {
		return nil, providers.ErrNotFound
	}
	listeners, err := p.listListeners(ctx, lbARN)
	if err != nil {
		return nil, err
	}
	groups, err := p.attachedGroups(ctx, lbARN)
	if err != nil {
		return nil, err
	}
	health := map[string][]elbtypes.TargetHealthDescription{}
	for _, g := range groups {
		out, err := p.elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn})
		if err != nil {
			return nil, p.classify("reading targets of "+aws.ToString(g.TargetGroupName), err)
		}
		health[aws.ToString(g.TargetGroupArn)] = out.TargetHealthDescriptions
	}
	sgID := ""
	if len(lb.SecurityGroups) > 0 {
		sgID = lb.SecurityGroups[0]
	}
	return p.status(lb, sgID, listeners, groups, health), nil
}

// status reports what exists. Targets counts distinct targets that are not
// draining; Healthy those healthy in every group they are registered in.
func (p *Provider) status(lb *elbtypes.LoadBalancer, sgID string, listeners []elbtypes.Listener, groups []elbtypes.TargetGroup, health map[string][]elbtypes.TargetHealthDescription) *providers.Status {
	st := &providers.Status{
		Ingress:   []providers.Ingress{{Hostname: aws.ToString(lb.DNSName)}},
		Resources: []providers.Resource{{Kind: KindLoadBalancer, ID: aws.ToString(lb.LoadBalancerArn)}},
		Cost:      providers.CostInputs{Kind: CostKind, Region: p.opts.AWS.Region, MeterID: aws.ToString(lb.LoadBalancerArn)},
	}
	if sgID != "" {
		st.Resources = append(st.Resources, providers.Resource{Kind: KindSecurityGroup, ID: sgID})
	}
	sort.Slice(listeners, func(i, j int) bool { return aws.ToInt32(listeners[i].Port) < aws.ToInt32(listeners[j].Port) })
	for _, l := range listeners {
		st.Resources = append(st.Resources, providers.Resource{Kind: KindListener, ID: aws.ToString(l.ListenerArn)})
		port := aws.ToInt32(l.Port)
		switch l.Protocol {
		case elbtypes.ProtocolEnumUdp:
			st.Ports = append(st.Ports, providers.PortStatus{Port: port, Protocol: providers.UDP})
		case elbtypes.ProtocolEnumTcpUdp:
			st.Ports = append(st.Ports, providers.PortStatus{Port: port, Protocol: providers.TCP}, providers.PortStatus{Port: port, Protocol: providers.UDP})
		default:
			st.Ports = append(st.Ports, providers.PortStatus{Port: port, Protocol: providers.TCP})
		}
	}
	total, healthy := map[string]bool{}, map[string]bool{}
	registrations := 0
	for _, g := range groups {
		st.Resources = append(st.Resources, providers.Resource{Kind: KindTargetGroup, ID: aws.ToString(g.TargetGroupArn)})
		for _, h := range health[aws.ToString(g.TargetGroupArn)] {
			if h.TargetHealth != nil && h.TargetHealth.State == elbtypes.TargetHealthStateEnumDraining {
				continue
			}
			id := aws.ToString(h.Target.Id)
			registrations++
			ok := h.TargetHealth != nil && h.TargetHealth.State == elbtypes.TargetHealthStateEnumHealthy
			if seen := total[id]; !seen {
				healthy[id] = ok
			} else {
				healthy[id] = healthy[id] && ok
			}
			total[id] = true
		}
	}
	st.Backends.Total = len(total)
	for _, ok := range healthy {
		if ok {
			st.Backends.Healthy++
		}
	}
	st.Cost.Units = map[string]int{"listeners": len(listeners), "targetGroups": len(groups), "targets": registrations}
	return st
}

// Delete implements providers.Provider. It removes, in dependency order, the
// load balancer (its listeners go with it), then every target group and
// security group tagged for key. AWS releases dependencies lazily: a target
// group stays in use and a security group keeps a dependency for a while
// after the load balancer is gone; those answers become a RetryError and the
// next call picks up where this one stopped.
func (p *Provider) Delete(ctx context.Context, key providers.Key) error {
	log := logr.FromContextOrDiscard(ctx).WithValues("Service", key.String())
	name := LoadBalancerName(key)
	p.setSwept(name, false)
	lb, err := p.findLoadBalancer(ctx, name)
	if err != nil {
		return err
	}
	if lb != nil {
		arn := aws.ToString(lb.LoadBalancerArn)
		tags, err := p.describeTags(ctx, []string{arn})
		if err != nil {
			return err
		}
		if providers.Owns(tags[arn], key) {
			log.Info("Deleting load balancer", "loadBalancerArn", arn)
			if _, err := p.elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}); err != nil {
				return p.classify("deleting load balancer "+name, err)
			}
		} else {
			log.Info("Leaving a load balancer that Portico does not own", "loadBalancerArn", arn)
		}
	}

	groups, err := p.groupsByPrefix(ctx, targetGroupPrefix(key))
	if err != nil {
		return err
	}
	var arns []string
	for _, g := range groups {
		arns = append(arns, aws.ToString(g.TargetGroupArn))
	}
	tags, err := p.describeTags(ctx, arns)
	if err != nil {
		return err
	}
	for _, g := range groups {
		arn := aws.ToString(g.TargetGroupArn)
		if !providers.Owns(tags[arn], key) {
			continue
		}
		log.Info("Deleting target group", "targetGroup", aws.ToString(g.TargetGroupName))
		_, err := p.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: g.TargetGroupArn})
		if err := p.groupDeleted(arn, "deleting target group "+aws.ToString(g.TargetGroupName), err); err != nil {
			return err
		}
	}

	sgs, err := p.ownedSecurityGroups(ctx, key, "")
	if err != nil {
		return err
	}
	for _, sg := range sgs {
		log.Info("Deleting security group", "securityGroup", aws.ToString(sg.GroupId))
		_, err := p.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
		if err := p.securityGroupDeleted(aws.ToString(sg.GroupId), "deleting security group "+aws.ToString(sg.GroupId), err); err != nil {
			return err
		}
	}
	return nil
}
