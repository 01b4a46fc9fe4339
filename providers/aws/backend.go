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

	"github.com/portico-lb/portico/providers"
)

// The backend security group is how a Network Load Balancer's health checks
// and traffic get into the nodes, as with the aws-load-balancer-controller's
// shared backend security group
// (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/deploy/security_groups/):
// one group per cluster and VPC, with no rules of its own, attached to every
// Portico load balancer next to the Service's own (frontend) group. Each
// node security group gets rules admitting TCP and UDP from the backend
// group on the node port range and kube-proxy's health port, plus any other
// port a Service's targets or health checks use. Because the source is the
// shared group, the rules do not grow with the number of Services, and
// only Portico's load balancers match them.
//
// The node security group of an instance is its only security group, or
// the one tagged kubernetes.io/cluster/<cluster-name> when it has several
// (the controller's rule). Portico never deletes the backend group and only
// ever adds rules whose source is it; Services that opt out
// (AnnotationManageBackendSecurityGroupRules) get load balancers without it.

// TagRole marks a cluster-wide Portico resource's role; the backend
// security group carries portico.dev/role=backend with the cluster and
// managed-by marks (no Service mark: it is shared).
const (
	TagRole         = "portico.dev/role"
	RoleBackend     = "backend"
	kubeProxyHealth = 10256
)

// Default node port range of the apiserver (--service-node-port-range).
const (
	defaultNodePortMin = 30000
	defaultNodePortMax = 32767
)

// backendCacheTTL is how long Portico trusts what it learnt about node
// security groups and their rules before it reads them again.
const backendCacheTTL = 10 * time.Minute

// BackendSecurityGroupName is the name of the cluster's backend group.
func BackendSecurityGroupName(clusterID string) string { return "portico-" + clusterID + "-backend" }

// portRange is an inclusive port range of one protocol.
type portRange struct {
	protocol string
	from, to int32
}

// backendState caches, per process, the backend group per VPC, the node
// security group of each instance and the rules known to be in place.
type backendState struct {
	group    map[string]string    // VPC -> backend group ID
	nodeSG   map[string]string    // instance ID -> node security group
	rulesOK  map[string]time.Time // nodeSG|protocol|from|to -> when seen
	learntAt map[string]time.Time // instance ID -> when nodeSG was read
}

func newBackendState() *backendState {
	return &backendState{group: map[string]string{}, nodeSG: map[string]string{}, rulesOK: map[string]time.Time{}, learntAt: map[string]time.Time{}}
}

func ruleCacheKey(sg string, r portRange) string {
	return fmt.Sprintf("%s|%s|%d|%d", sg, r.protocol, r.from, r.to)
}

// backendRanges are the port ranges the node groups must admit from the
// backend group for pl: node ports and kube-proxy's health port always,
// and every target or health-check port outside them.
func backendRanges(pl *plan) []portRange {
	out := []portRange{
		{"tcp", defaultNodePortMin, defaultNodePortMax},
		{"udp", defaultNodePortMin, defaultNodePortMax},
		{"tcp", kubeProxyHealth, kubeProxyHealth},
	}
	covered := func(proto string, port int32) bool {
		for _, r := range out {
			if r.protocol == proto && port >= r.from && port <= r.to {
				return true
			}
		}
		return false
	}
	add := func(proto string, port int32) {
		if port > 0 && !covered(proto, port) {
			out = append(out, portRange{proto, port, port})
		}
	}
	for _, name := range sortedKeys(pl.groups) {
		g := pl.groups[name]
		protos := []string{"tcp"}
		switch g.protocol {
		case "UDP":
			protos = []string{"udp"}
		case "TCP_UDP":
			protos = []string{"tcp", "udp"}
		}
		for _, t := range g.targets {
			for _, pr := range protos {
				add(pr, t.port)
			}
		}
		if g.health.port != trafficPort {
			var port int32
			fmt.Sscan(g.health.port, &port)
			add("tcp", port)
		}
	}
	return out
}

// ensureBackendGroup finds or creates the cluster's backend group in vpc.
func (s *ensureRun) ensureBackendGroup(ctx context.Context, vpc string) error {
	p := s.p
	// One Ensure at a time makes the cluster-wide group; the others wait
	// and find it in the cache.
	p.backendMu.Lock()
	defer p.backendMu.Unlock()
	p.mu.Lock()
	id := p.backend.group[vpc]
	p.mu.Unlock()
	if id != "" {
		s.backendSG = id
		return nil
	}
	name := BackendSecurityGroupName(p.opts.ClusterID)
	tags := []ec2types.Tag{
		{Key: aws.String(providers.TagCluster), Value: aws.String(p.opts.ClusterID)},
		{Key: aws.String(providers.TagManagedBy), Value: aws.String(providers.ManagedByValue)},
		{Key: aws.String(TagRole), Value: aws.String(RoleBackend)},
	}
	s.log.Info("Creating backend security group", "securityGroupName", name, "vpc", vpc)
	out, err := p.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:         aws.String(name),
		Description:       aws.String("Portico load balancers to the nodes of cluster " + p.opts.ClusterID),
		VpcId:             aws.String(vpc),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: tags}},
	})
	switch {
	case apiCode(err) == codeGroupDuplicate:
		found, derr := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String("group-name"), Values: []string{name}}, {Name: aws.String("vpc-id"), Values: []string{vpc}},
		}})
		if derr != nil {
			return p.classify("describing security group "+name, derr)
		}
		if len(found.SecurityGroups) == 0 {
			return p.classify("creating security group "+name, err) // not visible yet
		}
		g := found.SecurityGroups[0]
		t := ec2TagMap(g.Tags)
		if t[providers.TagCluster] != p.opts.ClusterID || t[providers.TagManagedBy] != providers.ManagedByValue || t[TagRole] != RoleBackend {
			return &providers.NotOwnedError{Kind: "securityGroup", ID: aws.ToString(g.GroupId)}
		}
		id = aws.ToString(g.GroupId)
	case err != nil:
		return p.classify("creating security group "+name, err)
	default:
		id = aws.ToString(out.GroupId)
	}
	p.mu.Lock()
	p.backend.group[vpc] = id
	p.mu.Unlock()
	s.backendSG = id
	return nil
}

// nodeSecurityGroups returns the node security group of every instance
// target, reading the instances Portico has not seen lately.
func (s *ensureRun) nodeSecurityGroups(ctx context.Context) ([]string, error) {
	p := s.p
	var unknown []string
	groups := map[string]bool{}
	now := time.Now()
	p.mu.Lock()
	for _, id := range s.plan.instances {
		if sg, ok := p.backend.nodeSG[id]; ok && now.Sub(p.backend.learntAt[id]) < backendCacheTTL {
			if sg != "" {
				groups[sg] = true
			}
			continue
		}
		unknown = append(unknown, id)
	}
	p.mu.Unlock()
	if len(unknown) > 0 {
		found, err := p.readNodeGroups(ctx, unknown)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		for _, id := range unknown {
			sg, ok := found[id]
			if !ok {
				continue // gone: its Node will go too
			}
			p.backend.nodeSG[id], p.backend.learntAt[id] = sg, now
			if sg != "" {
				groups[sg] = true
			}
		}
		p.mu.Unlock()
	}
	out := make([]string, 0, len(groups))
	for g := range groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out, nil
}

// readNodeGroups reads the instances' security groups and picks each one's
// node group; an instance whose groups leave the choice open gets "" and a
// ConfigError names it.
func (p *Provider) readNodeGroups(ctx context.Context, ids []string) (map[string]string, error) {
	byInstance := map[string][]string{}
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: ids}},
	})
	for pages.HasMorePages() {
		pg, err := pages.NextPage(ctx)
		if err != nil {
			return nil, p.classify("describing the nodes' instances", err)
		}
		for _, r := range pg.Reservations {
			for _, in := range r.Instances {
				var sgs []string
				for _, g := range in.SecurityGroups {
					sgs = append(sgs, aws.ToString(g.GroupId))
				}
				byInstance[aws.ToString(in.InstanceId)] = sgs
			}
		}
	}
	out := map[string]string{}
	var several []string
	for id, sgs := range byInstance {
		switch len(sgs) {
		case 0:
			out[id] = ""
		case 1:
			out[id] = sgs[0]
		default:
			several = append(several, sgs...)
		}
	}
	if len(several) == 0 {
		return out, nil
	}
	tagged := map[string]bool{}
	described, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-id"), Values: several},
		{Name: aws.String("tag-key"), Values: []string{TagClusterPrefix + p.opts.ClusterName}},
	}})
	if err != nil {
		return nil, p.classify("describing the nodes' security groups", err)
	}
	for _, g := range described.SecurityGroups {
		tagged[aws.ToString(g.GroupId)] = true
	}
	for id, sgs := range byInstance {
		if len(sgs) < 2 {
			continue
		}
		var pick []string
		for _, g := range sgs {
			if tagged[g] {
				pick = append(pick, g)
			}
		}
		if len(pick) != 1 {
			return nil, providers.Configf("AmbiguousNodeSecurityGroup",
				"instance %s has security groups %v and %d of them carry the %s%s tag; tag exactly one, or set %s: \"false\" and open the node security groups to the load balancer yourself",
				id, sgs, len(pick), TagClusterPrefix, p.opts.ClusterName, AnnotationManageBackendSecurityGroupRules)
		}
		out[id] = pick[0]
	}
	return out, nil
}

// ensureBackendRules opens every node security group to the backend group
// on the ranges pl needs. It adds rules and never removes any: they admit
// only Portico's load balancers and other Services share them.
func (s *ensureRun) ensureBackendRules(ctx context.Context) error {
	s.p.backendMu.Lock() // Services share the node groups: one writer
	defer s.p.backendMu.Unlock()
	nodeGroups, err := s.nodeSecurityGroups(ctx)
	if err != nil {
		return err
	}
	p := s.p
	ranges := backendRanges(s.plan)
	now := time.Now()
	for _, sg := range nodeGroups {
		var missing []portRange
		p.mu.Lock()
		for _, r := range ranges {
			if seen, ok := p.backend.rulesOK[ruleCacheKey(sg, r)]; !ok || now.Sub(seen) >= backendCacheTTL {
				missing = append(missing, r)
			}
		}
		p.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		if err := s.authorizeBackend(ctx, sg, missing); err != nil {
			return err
		}
		p.mu.Lock()
		for _, r := range missing {
			p.backend.rulesOK[ruleCacheKey(sg, r)] = now
		}
		p.mu.Unlock()
	}
	return nil
}

// authorizeBackend adds the ranges to node group sg: in one call when none
// is there yet; when AWS answers that one already is, after reading the
// group's rules, only the missing ones.
func (s *ensureRun) authorizeBackend(ctx context.Context, sg string, ranges []portRange) error {
	perms := func(rs []portRange) []ec2types.IpPermission {
		var out []ec2types.IpPermission
		for _, r := range rs {
			out = append(out, ec2types.IpPermission{
				IpProtocol: aws.String(r.protocol), FromPort: aws.Int32(r.from), ToPort: aws.Int32(r.to),
				UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(s.backendSG),
					Description: aws.String("portico: load balancers of cluster " + s.p.opts.ClusterID)}},
			})
		}
		return out
	}
	s.log.Info("Opening node security group to the load balancers", "securityGroup", sg, "rules", len(ranges))
	_, err := s.p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: perms(ranges)})
	if apiCode(err) != "InvalidPermission.Duplicate" {
		if err != nil {
			return s.p.classify("opening node security group "+sg+" to "+s.backendSG, err)
		}
		return nil
	}
	out, err := s.p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{sg}})
	if err != nil {
		return s.p.classify("describing node security group "+sg, err)
	}
	have := map[portRange]bool{}
	for _, g := range out.SecurityGroups {
		for _, perm := range g.IpPermissions {
			for _, pair := range perm.UserIdGroupPairs {
				if aws.ToString(pair.GroupId) == s.backendSG {
					have[portRange{strings.ToLower(aws.ToString(perm.IpProtocol)), aws.ToInt32(perm.FromPort), aws.ToInt32(perm.ToPort)}] = true
				}
			}
		}
	}
	var rest []portRange
	for _, r := range ranges {
		if !have[r] {
			rest = append(rest, r)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	if _, err := s.p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(sg), IpPermissions: perms(rest)}); err != nil {
		return s.p.classify("opening node security group "+sg+" to "+s.backendSG, err)
	}
	return nil
}
