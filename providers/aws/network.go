package aws

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/portico-lb/portico/providers"
)

// Standard subnet tags (shared with the in-tree cloud provider and the AWS
// Load Balancer Controller).
const (
	TagRoleELB         = "kubernetes.io/role/elb"
	TagRoleInternalELB = "kubernetes.io/role/internal-elb"
	TagClusterPrefix   = "kubernetes.io/cluster/"
)

// describeTagsBatch is the most ARNs DescribeTags accepts.
const describeTagsBatch = 20

// ---- reads ----

func (p *Provider) findLoadBalancer(ctx context.Context, name string) (*elbtypes.LoadBalancer, error) {
	out, err := p.elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
	if apiCode(err) == codeLoadBalancerNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, p.classify("describing load balancer "+name, err)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, nil
	}
	return &out.LoadBalancers[0], nil
}

func (p *Provider) findTargetGroup(ctx context.Context, name string) (*elbtypes.TargetGroup, error) {
	out, err := p.elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{name}})
	if apiCode(err) == codeTargetGroupNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, p.classify("describing target group "+name, err)
	}
	if len(out.TargetGroups) == 0 {
		return nil, nil
	}
	return &out.TargetGroups[0], nil
}

func (p *Provider) attachedGroups(ctx context.Context, lbARN string) ([]elbtypes.TargetGroup, error) {
	var out []elbtypes.TargetGroup
	pages := elbv2.NewDescribeTargetGroupsPaginator(p.elb, &elbv2.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(lbARN)})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.classify("listing target groups of "+lbARN, err)
		}
		out = append(out, pg.TargetGroups...)
	}
	return out, nil
}

// groupsByPrefix lists every target group whose name starts with prefix,
// following pagination across the account's target groups.
func (p *Provider) groupsByPrefix(ctx context.Context, prefix string) ([]elbtypes.TargetGroup, error) {
	var out []elbtypes.TargetGroup
	pages := elbv2.NewDescribeTargetGroupsPaginator(p.elb, &elbv2.DescribeTargetGroupsInput{})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.classify("listing target groups", err)
		}
		for _, g := range pg.TargetGroups {
			if strings.HasPrefix(aws.ToString(g.TargetGroupName), prefix) {
				out = append(out, g)
			}
		}
	}
	return out, nil
}

func (p *Provider) listListeners(ctx context.Context, lbARN string) ([]elbtypes.Listener, error) {
	var out []elbtypes.Listener
	pages := elbv2.NewDescribeListenersPaginator(p.elb, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(lbARN)})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.classify("listing listeners of "+lbARN, err)
		}
		out = append(out, pg.Listeners...)
	}
	return out, nil
}

// describeTags returns the tags of ELBv2 resources by ARN, 20 per call.
func (p *Provider) describeTags(ctx context.Context, arns []string) (map[string]map[string]string, error) {
	tags := map[string]map[string]string{}
	for start := 0; start < len(arns); start += describeTagsBatch {
		batch := arns[start:min(start+describeTagsBatch, len(arns))]
		out, err := p.elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: batch})
		if err != nil {
			return nil, p.classify("reading tags", err)
		}
		for _, d := range out.TagDescriptions {
			m := map[string]string{}
			for _, t := range d.Tags {
				m[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			tags[aws.ToString(d.ResourceArn)] = m
		}
	}
	return tags, nil
}

// ---- subnets ----

// resolveSubnets returns the VPC and subnets for a new load balancer: the
// annotated ones, or one per zone among the subnets tagged for the scheme's
// role and not claimed by another cluster.
func (p *Provider) resolveSubnets(ctx context.Context, pl *plan) (string, []string, error) {
	if len(pl.subnets) > 0 {
		out, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: pl.subnets})
		if err != nil {
			return "", nil, p.classify("describing subnets "+strings.Join(pl.subnets, ","), err)
		}
		vpc, zones := "", map[string]string{}
		if len(out.Subnets) != len(pl.subnets) {
			// Some emulators answer an unknown ID with nothing rather than
			// InvalidSubnetID.NotFound; never build on a subnet not seen.
			seen := map[string]bool{}
			for _, sn := range out.Subnets {
				seen[aws.ToString(sn.SubnetId)] = true
			}
			for _, id := range pl.subnets {
				if !seen[id] {
					return "", nil, providers.Configf("InvalidSubnet", "%s names subnet %s, which does not exist", AnnotationSubnets, id)
				}
			}
		}
		for _, sn := range out.Subnets {
			if vpc != "" && aws.ToString(sn.VpcId) != vpc {
				return "", nil, providers.Configf("InvalidAnnotation", "%s spans VPCs %s and %s; a load balancer lives in one VPC", AnnotationSubnets, vpc, aws.ToString(sn.VpcId))
			}
			vpc = aws.ToString(sn.VpcId)
			z := aws.ToString(sn.AvailabilityZone)
			if other, dup := zones[z]; dup {
				return "", nil, providers.Configf("InvalidAnnotation", "%s names %s and %s, both in zone %s; give at most one subnet per zone", AnnotationSubnets, other, aws.ToString(sn.SubnetId), z)
			}
			zones[z] = aws.ToString(sn.SubnetId)
		}
		return vpc, pl.subnets, nil
	}

	role := TagRoleELB
	if pl.scheme == elbtypes.LoadBalancerSchemeEnumInternal {
		role = TagRoleInternalELB
	}
	// Every Service of a scheme discovers the same subnets: a burst of
	// creates asks AWS once a minute, not once per Service.
	p.mu.Lock()
	c, ok := p.discovered[role]
	p.mu.Unlock()
	if ok && time.Since(c.at) < discoveryTTL {
		return c.vpc, c.subnets, nil
	}
	vpc, subnets, err := p.discoverSubnets(ctx, role)
	if err != nil {
		return "", nil, err
	}
	p.mu.Lock()
	p.discovered[role] = discovery{vpc: vpc, subnets: subnets, at: time.Now()}
	p.mu.Unlock()
	return vpc, subnets, nil
}

// discoveryTTL is how long discovered subnets are reused.
const discoveryTTL = time.Minute

// discovery is one cached subnet discovery.
type discovery struct {
	vpc     string
	subnets []string
	at      time.Time
}

// discoverSubnets picks one subnet per zone among those tagged for role.
func (p *Provider) discoverSubnets(ctx context.Context, role string) (string, []string, error) {
	filters := []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{role}}}
	if p.opts.VPCID != "" {
		filters = append(filters, ec2types.Filter{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}})
	}
	var candidates []ec2types.Subnet
	pages := ec2.NewDescribeSubnetsPaginator(p.ec2, &ec2.DescribeSubnetsInput{Filters: filters})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return "", nil, p.classify("discovering subnets tagged "+role, err)
		}
		candidates = append(candidates, pg.Subnets...)
	}
	return pickSubnets(candidates, role, p.opts.ClusterName, p.opts.VPCID)
}

// allowNamed refuses, before anything is changed, the subnets and Elastic
// IPs a Service names that the cluster may not use (allowSubnets,
// allowEIPs). It runs before replaceIfImmutableChanged, which would
// otherwise delete the load balancer to move it to a refused subnet.
func (p *Provider) allowNamed(ctx context.Context, pl *plan) error {
	if len(pl.subnets) > 0 {
		out, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: pl.subnets})
		if err != nil {
			return p.classify("describing subnets "+strings.Join(pl.subnets, ","), err)
		}
		if err := p.allowSubnets(ctx, out.Subnets); err != nil {
			return err
		}
	}
	if len(pl.eips) > 0 {
		out, err := p.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: pl.eips})
		if err != nil {
			return p.classify("describing Elastic IPs "+strings.Join(pl.eips, ","), err)
		}
		for _, a := range out.Addresses {
			if err := p.allowTagged(AnnotationEIPAllocations, "Elastic IP", aws.ToString(a.AllocationId), a.Tags, p.opts.AllowUntaggedEIPs, "--aws-allow-untagged-eips"); err != nil {
				return err
			}
		}
	}
	return nil
}

// allowTagged applies the cluster-tag rule to one named resource: it must
// carry kubernetes.io/cluster/<name> or portico.dev/cluster=<id>; with
// allowUntagged one without any cluster tag is accepted too; one tagged
// only for another cluster never is.
func (p *Provider) allowTagged(annotation, kind, id string, tags []ec2types.Tag, allowUntagged bool, flag string) error {
	ours, foreign := false, ""
	for _, t := range tags {
		k := aws.ToString(t.Key)
		if name, ok := strings.CutPrefix(k, TagClusterPrefix); ok {
			if name == p.opts.ClusterName {
				ours = true
			} else {
				foreign = name
			}
		}
		if k == providers.TagCluster {
			if aws.ToString(t.Value) == p.opts.ClusterID {
				ours = true
			} else {
				foreign = aws.ToString(t.Value)
			}
		}
	}
	switch {
	case ours:
		return nil
	case foreign != "":
		return providers.Configf(providers.ReasonResourceNotAllowed, "%s names %s %s, which is tagged for cluster %s, not for this one (%s%s)", annotation, kind, id, foreign, TagClusterPrefix, p.opts.ClusterName)
	case !allowUntagged:
		return providers.Configf(providers.ReasonResourceNotAllowed, "%s names %s %s, which is not tagged for this cluster; tag it %s%s (or %s=%s), or start the operator with %s", annotation, kind, id, TagClusterPrefix, p.opts.ClusterName, providers.TagCluster, p.opts.ClusterID, flag)
	}
	return nil
}

// allowSubnets refuses annotated subnets the cluster may not use. By default
// a subnet must be tagged for this cluster: kubernetes.io/cluster/<name>
// (as the AWS Load Balancer Controller requires,
// https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/subnet_discovery/)
// or Portico's portico.dev/cluster=<cluster-id>. With
// --aws-allow-untagged-subnets a subnet without any cluster tag is accepted
// too, in --aws-vpc-id or else in a VPC that holds a subnet tagged for this
// cluster; a subnet tagged only for other clusters never is.
func (p *Provider) allowSubnets(ctx context.Context, subnets []ec2types.Subnet) error {
	var untagged []ec2types.Subnet
	for _, sn := range subnets {
		id := aws.ToString(sn.SubnetId)
		if p.opts.VPCID != "" && aws.ToString(sn.VpcId) != p.opts.VPCID {
			return providers.Configf(providers.ReasonResourceNotAllowed, "%s names subnet %s in VPC %s; this cluster may use only VPC %s (--aws-vpc-id)", AnnotationSubnets, id, aws.ToString(sn.VpcId), p.opts.VPCID)
		}
		if err := p.allowTagged(AnnotationSubnets, "subnet", id, sn.Tags, p.opts.AllowUntaggedSubnets, "--aws-allow-untagged-subnets"); err != nil {
			return err
		}
		if p.allowTagged(AnnotationSubnets, "subnet", id, sn.Tags, false, "") != nil {
			untagged = append(untagged, sn)
		}
	}
	if len(untagged) == 0 || p.opts.VPCID != "" {
		return nil
	}
	vpcs := map[string]bool{}
	pages := ec2.NewDescribeSubnetsPaginator(p.ec2, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{TagClusterPrefix + p.opts.ClusterName}}}})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return p.classify("finding the cluster's VPC", err)
		}
		for _, sn := range pg.Subnets {
			vpcs[aws.ToString(sn.VpcId)] = true
		}
	}
	for _, sn := range untagged {
		if !vpcs[aws.ToString(sn.VpcId)] {
			return providers.Configf(providers.ReasonResourceNotAllowed, "%s names untagged subnet %s in VPC %s, which holds no subnet tagged %s%s; set --aws-vpc-id to allow it", AnnotationSubnets, aws.ToString(sn.SubnetId), aws.ToString(sn.VpcId), TagClusterPrefix, p.opts.ClusterName)
		}
	}
	return nil
}

// pickSubnets chooses one subnet per zone: subnets tagged for this cluster
// first, then untagged ones, never those tagged for another cluster.
func pickSubnets(subnets []ec2types.Subnet, role, cluster, vpcFlag string) (string, []string, error) {
	type cand struct {
		id, vpc, zone string
		ours          bool
	}
	var cands []cand
	for _, sn := range subnets {
		c := cand{id: aws.ToString(sn.SubnetId), vpc: aws.ToString(sn.VpcId), zone: aws.ToString(sn.AvailabilityZone)}
		foreign := false
		for _, t := range sn.Tags {
			k := aws.ToString(t.Key)
			if k == role && (aws.ToString(t.Value) == "0" || strings.EqualFold(aws.ToString(t.Value), "false")) {
				foreign = true // explicitly opted out of the role
			}
			if name, ok := strings.CutPrefix(k, TagClusterPrefix); ok {
				if name == cluster {
					c.ours = true
				} else {
					foreign = true
				}
			}
		}
		if !foreign || c.ours {
			cands = append(cands, c)
		}
	}
	vpcs := map[string]bool{}
	oursVPC := map[string]bool{}
	for _, c := range cands {
		vpcs[c.vpc] = true
		if c.ours {
			oursVPC[c.vpc] = true
		}
	}
	vpc := vpcFlag
	switch {
	case vpc != "":
	case len(vpcs) == 1:
		for v := range vpcs {
			vpc = v
		}
	case len(oursVPC) == 1:
		for v := range oursVPC {
			vpc = v
		}
	case len(vpcs) == 0:
		return "", nil, providers.Configf("NoSubnets", "no subnet carries the %s tag (and none of another cluster's %s<name> tags); tag subnets or set %s", role, TagClusterPrefix, AnnotationSubnets)
	default:
		return "", nil, providers.Configf("AmbiguousSubnets", "subnets tagged %s span several VPCs; set --aws-vpc-id or %s", role, AnnotationSubnets)
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].ours != cands[j].ours {
			return cands[i].ours
		}
		return cands[i].id < cands[j].id
	})
	byZone := map[string]string{}
	for _, c := range cands {
		if c.vpc == vpc && byZone[c.zone] == "" {
			byZone[c.zone] = c.id
		}
	}
	if len(byZone) == 0 {
		return "", nil, providers.Configf("NoSubnets", "no subnet in VPC %s carries the %s tag", vpc, role)
	}
	var out []string
	for _, z := range sortedKeys(byZone) {
		out = append(out, byZone[z])
	}
	return vpc, out, nil
}

// ---- security group ----

func ownershipFilters(key providers.Key) []ec2types.Filter {
	var out []ec2types.Filter
	tags := providers.OwnershipTags(key)
	for _, k := range sortedKeys(tags) {
		out = append(out, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	return out
}

func ec2TagMap(tags []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range tags {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// ownedSecurityGroups lists the security groups tagged for key (in vpc,
// when given), following pagination.
func (p *Provider) ownedSecurityGroups(ctx context.Context, key providers.Key, vpc string) ([]ec2types.SecurityGroup, error) {
	filters := ownershipFilters(key)
	if vpc != "" {
		filters = append(filters, ec2types.Filter{Name: aws.String("vpc-id"), Values: []string{vpc}})
	}
	var out []ec2types.SecurityGroup
	pages := ec2.NewDescribeSecurityGroupsPaginator(p.ec2, &ec2.DescribeSecurityGroupsInput{Filters: filters})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.classify("finding the security group", err)
		}
		for _, sg := range pg.SecurityGroups {
			if providers.Owns(ec2TagMap(sg.Tags), key) {
				out = append(out, sg)
			}
		}
	}
	return out, nil
}

// ensureSecurityGroup finds or creates the load balancer's security group and
// makes its ingress rules match the plan.
func (s *ensureRun) ensureSecurityGroup(ctx context.Context, vpc string) error {
	var sg *ec2types.SecurityGroup
	if lb := s.cur.lb; lb != nil {
		// No call has changed anything yet: replaceIfImmutableChanged left
		// this load balancer in place and network reads nothing for it.
		restricted := len(s.plan.sourceRanges) > 0
		if len(lb.SecurityGroups) == 0 {
			if restricted {
				// A security group can be added to an NLB only at creation
				// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-security-groups.html).
				return providers.Configf(providers.ReasonSourceRangesNotEnforceable,
					"load balancer %s was created without a security group, so loadBalancerSourceRanges cannot be enforced on it; AWS adds security groups to an NLB only at creation: delete and recreate the Service (or remove loadBalancerSourceRanges)", s.plan.name)
			}
			s.log.V(1).Info("Load balancer has no security group; it admits every client, as the Service asks")
			return nil
		}
		out, err := s.p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: lb.SecurityGroups})
		if err != nil {
			return s.p.classify("describing the load balancer's security groups", err)
		}
		for i := range out.SecurityGroups {
			if providers.Owns(ec2TagMap(out.SecurityGroups[i].Tags), s.key) {
				sg = &out.SecurityGroups[i]
			}
		}
		if sg == nil {
			if restricted {
				return providers.Configf(providers.ReasonSourceRangesNotEnforceable,
					"load balancer %s has security groups %v that Portico does not own, so it cannot enforce loadBalancerSourceRanges on them", s.plan.name, lb.SecurityGroups)
			}
			s.log.Info("Load balancer's security groups are not Portico's; leaving them alone", "securityGroups", lb.SecurityGroups)
			return nil
		}
	}
	// Without a load balancer, create the group: CreateSecurityGroup
	// answers InvalidGroup.Duplicate when an interrupted run made it, and
	// createSecurityGroup then adopts it if it carries our tags. The rules
	// of a new group are all missing; an adopted one's are read.
	if sg == nil {
		created, err := s.createSecurityGroup(ctx, vpc)
		if err != nil {
			return err
		}
		sg = created
	}
	s.sgID = aws.ToString(sg.GroupId)
	return s.ensureRules(ctx, sg)
}

func (s *ensureRun) createSecurityGroup(ctx context.Context, vpc string) (*ec2types.SecurityGroup, error) {
	name := SecurityGroupName(s.key)
	tags := providers.OwnershipTags(s.key)
	var ec2Tags []ec2types.Tag
	for _, k := range sortedKeys(tags) {
		ec2Tags = append(ec2Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	s.log.Info("Creating security group", "securityGroupName", name, "vpc", vpc)
	out, err := s.p.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:         aws.String(name),
		Description:       aws.String(fmt.Sprintf("Portico load balancer for %s in cluster %s", s.key, s.key.ClusterID)),
		VpcId:             aws.String(vpc),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: ec2Tags}},
	})
	if apiCode(err) == codeGroupDuplicate {
		// A group with our name exists: ours, not yet visible to the tag
		// filter, or someone else's.
		found, derr := s.p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String("group-name"), Values: []string{name}}, {Name: aws.String("vpc-id"), Values: []string{vpc}},
		}})
		if derr != nil {
			return nil, s.p.classify("describing security group "+name, derr)
		}
		if len(found.SecurityGroups) > 0 {
			g := &found.SecurityGroups[0] // names are unique per VPC
			if !providers.Owns(ec2TagMap(g.Tags), s.key) {
				return nil, &providers.NotOwnedError{Kind: "securityGroup", ID: aws.ToString(g.GroupId)}
			}
			return g, nil
		}
	}
	if err != nil {
		return nil, s.p.classify("creating security group "+name, err)
	}
	return &ec2types.SecurityGroup{GroupId: out.GroupId, GroupName: aws.String(name), VpcId: aws.String(vpc), Tags: out.Tags}, nil
}

// ensureRules authorizes missing ingress rules before it revokes stale ones.
func (s *ensureRun) ensureRules(ctx context.Context, sg *ec2types.SecurityGroup) error {
	have := map[sgRule]bool{}
	for _, perm := range sg.IpPermissions {
		proto := aws.ToString(perm.IpProtocol)
		from, to := aws.ToInt32(perm.FromPort), aws.ToInt32(perm.ToPort)
		if from != to || (proto != "tcp" && proto != "udp") {
			continue // not a rule Portico writes; leave it
		}
		for _, r := range perm.IpRanges {
			have[sgRule{protocol: proto, port: from, cidr: aws.ToString(r.CidrIp)}] = true
		}
		for _, r := range perm.Ipv6Ranges {
			have[sgRule{protocol: proto, port: from, cidr: aws.ToString(r.CidrIpv6)}] = true
		}
	}
	want := map[sgRule]bool{}
	var add, drop []ec2types.IpPermission
	for _, r := range s.plan.rules {
		want[r] = true
		if !have[r] {
			add = append(add, permission(r))
		}
	}
	var stale []sgRule
	for r := range have {
		if !want[r] {
			stale = append(stale, r)
		}
	}
	sort.Slice(stale, func(i, j int) bool { return ruleKey(stale[i]) < ruleKey(stale[j]) })
	for _, r := range stale {
		drop = append(drop, permission(r))
	}
	id := sg.GroupId
	if len(add) > 0 {
		s.log.Info("Allowing ingress", "securityGroup", aws.ToString(id), "rules", len(add))
		_, err := s.p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: id, IpPermissions: add})
		if err != nil {
			return s.p.classify("allowing ingress on "+aws.ToString(id), err)
		}
	}
	if len(drop) > 0 {
		s.log.Info("Revoking ingress", "securityGroup", aws.ToString(id), "rules", len(drop))
		_, err := s.p.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: id, IpPermissions: drop})
		if err != nil {
			return s.p.classify("revoking ingress on "+aws.ToString(id), err)
		}
	}
	return nil
}

func permission(r sgRule) ec2types.IpPermission {
	p := ec2types.IpPermission{IpProtocol: aws.String(r.protocol), FromPort: aws.Int32(r.port), ToPort: aws.Int32(r.port)}
	desc := aws.String("portico: listener " + strings.ToUpper(r.protocol) + " " + fmt.Sprint(r.port))
	if strings.Contains(r.cidr, ":") {
		p.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: aws.String(r.cidr), Description: desc}}
	} else {
		p.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(r.cidr), Description: desc}}
	}
	return p
}
