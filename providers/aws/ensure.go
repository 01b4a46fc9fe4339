package aws

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/providers"
)

// Attribute keys the provider manages.
const (
	attrCrossZone     = "load_balancing.cross_zone.enabled"
	attrProxyProtocol = "proxy_protocol_v2.enabled"
)

// observed is what exists in AWS for one Service before Ensure acts.
type observed struct {
	lb *elbtypes.LoadBalancer
	// groups holds the target groups attached to the load balancer and
	// those found under a planned name, by name.
	groups map[string]elbtypes.TargetGroup
	// attached names the groups the load balancer's listeners use.
	attached  []string
	listeners map[int32]elbtypes.Listener
	tags      map[string]map[string]string // by ARN
	// prefixed lists every group under the Service's name prefix when
	// listed is set (see observe).
	prefixed []elbtypes.TargetGroup
	listed   bool
}

// Ensure implements providers.Provider. It reads what exists, checks
// ownership before any change, then converges in dependency order: security
// group, load balancer, target groups, targets (register before deregister),
// listeners, and last the target groups no listener uses any more. Every step
// adopts what an interrupted earlier run created.
func (p *Provider) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	ann, err := ParseAnnotations(d.Annotations)
	if err != nil {
		return nil, err
	}
	pl, err := buildPlan(d, ann)
	if err != nil {
		return nil, err
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("Service", d.Key.String(), "loadBalancerName", pl.name)
	for _, n := range pl.skipped {
		log.V(1).Info("Skipping node without an EC2 instance provider ID", "node", n)
	}
	ctx = logr.NewContext(ctx, log)

	if err := p.allowNamed(ctx, pl); err != nil {
		return nil, err
	}
	sweep := !p.setSwept(pl.name, false)
	cur, err := p.observe(ctx, d.Key, pl, sweep)
	if err != nil {
		return nil, err
	}
	s := &ensureRun{p: p, key: d.Key, plan: pl, cur: cur, log: log, health: map[string][]elbtypes.TargetHealthDescription{}}
	st, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	if sweep {
		if err := s.sweepOrphanGroups(ctx); err != nil {
			return nil, err
		}
	}
	p.setSwept(pl.name, true)
	return st, nil
}

// setSwept records whether name's last Ensure finished and returns the
// previous value.
func (p *Provider) setSwept(name string, done bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.swept[name]
	p.swept[name] = done
	return was
}

// ensureRun carries one Ensure from observation to status.
type ensureRun struct {
	p    *Provider
	key  providers.Key
	plan *plan
	cur  *observed
	log  logr.Logger

	created   bool // the load balancer was created by this run
	sgID      string
	backendSG string
	groups    map[string]elbtypes.TargetGroup // planned groups after ensure, by name
	fresh     map[string]bool                 // groups created by this run
	health    map[string][]elbtypes.TargetHealthDescription
	listeners []elbtypes.Listener
}

func (s *ensureRun) run(ctx context.Context) (*providers.Status, error) {
	vpc, mappings, err := s.replaceIfNeeded(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.ensureSecurityGroup(ctx, vpc); err != nil {
		return nil, err
	}
	if s.plan.backendRules && !s.p.opts.DisableBackendSecurityGroupRules && (s.cur.lb == nil || s.sgID != "") {
		if err := s.ensureBackendGroup(ctx, vpc); err != nil {
			return nil, err
		}
	}
	if err := s.ensureLoadBalancer(ctx, mappings); err != nil {
		return nil, err
	}
	if err := s.attachBackendGroup(ctx); err != nil {
		return nil, err
	}
	if s.backendSG != "" && slices.Contains(s.cur.lb.SecurityGroups, s.backendSG) {
		if err := s.ensureBackendRules(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.ensureCrossZone(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureTargetGroups(ctx, aws.ToString(s.cur.lb.VpcId)); err != nil {
		return nil, err
	}
	if err := s.ensureTargets(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureListeners(ctx); err != nil {
		return nil, err
	}
	if err := s.deleteStaleGroups(ctx); err != nil {
		return nil, err
	}
	var groups []elbtypes.TargetGroup
	for _, name := range sortedKeys(s.groups) {
		groups = append(groups, s.groups[name])
	}
	return s.p.status(s.cur.lb, s.sgID, s.listeners, groups, s.health), nil
}

// observe reads the load balancer, its listeners and target groups, the
// groups under planned names, and all their tags, and refuses to go on when
// any of them lacks Portico's ownership tags for key. With sweep, or when
// there is no load balancer yet, it lists every group under the Service's
// name prefix once (the groups under planned names and the orphans
// sweepOrphanGroups removes) instead of describing each planned name.
func (p *Provider) observe(ctx context.Context, key providers.Key, pl *plan, sweep bool) (*observed, error) {
	cur := &observed{groups: map[string]elbtypes.TargetGroup{}, listeners: map[int32]elbtypes.Listener{}}
	lb, err := p.findLoadBalancer(ctx, pl.name)
	if err != nil {
		return nil, err
	}
	cur.lb = lb
	if sweep || lb == nil {
		if cur.prefixed, err = p.groupsByPrefix(ctx, targetGroupPrefix(key)); err != nil {
			return nil, err
		}
		cur.listed = true
	}
	var arns []string
	if lb != nil {
		arns = append(arns, aws.ToString(lb.LoadBalancerArn))
		attached, err := p.attachedGroups(ctx, aws.ToString(lb.LoadBalancerArn))
		if err != nil {
			return nil, err
		}
		for _, g := range attached {
			cur.groups[aws.ToString(g.TargetGroupName)] = g
			cur.attached = append(cur.attached, aws.ToString(g.TargetGroupName))
		}
		ls, err := p.listListeners(ctx, aws.ToString(lb.LoadBalancerArn))
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			cur.listeners[aws.ToInt32(l.Port)] = l
			arns = append(arns, aws.ToString(l.ListenerArn))
		}
	}
	for _, name := range sortedKeys(pl.groups) {
		if _, ok := cur.groups[name]; ok {
			continue
		}
		if cur.listed {
			for _, g := range cur.prefixed {
				if aws.ToString(g.TargetGroupName) == name {
					cur.groups[name] = g
				}
			}
			continue
		}
		g, err := p.findTargetGroup(ctx, name)
		if err != nil {
			return nil, err
		}
		if g != nil {
			cur.groups[name] = *g
		}
	}
	for _, name := range sortedKeys(cur.groups) {
		arns = append(arns, aws.ToString(cur.groups[name].TargetGroupArn))
	}
	if cur.tags, err = p.describeTags(ctx, arns); err != nil {
		return nil, err
	}
	if lb != nil && !providers.Owns(cur.tags[aws.ToString(lb.LoadBalancerArn)], key) {
		return nil, &providers.NotOwnedError{Kind: "loadBalancer", ID: aws.ToString(lb.LoadBalancerArn)}
	}
	for _, name := range sortedKeys(cur.groups) {
		if arn := aws.ToString(cur.groups[name].TargetGroupArn); !providers.Owns(cur.tags[arn], key) {
			return nil, &providers.NotOwnedError{Kind: "targetGroup", ID: arn}
		}
	}
	for _, port := range sortedKeys(cur.listeners) {
		if arn := aws.ToString(cur.listeners[port].ListenerArn); !providers.Owns(cur.tags[arn], key) {
			return nil, &providers.NotOwnedError{Kind: "listener", ID: arn}
		}
	}
	return cur, nil
}

// TagSubnets marks a load balancer whose subnets were named by
// AnnotationSubnets, so that removing the annotation moves it back to the
// discovered subnets.
const (
	TagSubnets         = "portico.dev/subnets"
	subnetsByAnnotaton = "annotation"
)

// replaceIfNeeded returns the VPC and, when a load balancer must be
// created, its subnet mappings. A load balancer that must be replaced (a
// setting AWS cannot change in place differs, or AWS failed to provision it)
// is deleted only after everything its replacement needs has been checked:
// subnets that exist, one per zone, in the same VPC, an Elastic IP per
// subnet. A mistake in the new settings is then a ConfigError while the old
// load balancer keeps serving.
func (s *ensureRun) replaceIfNeeded(ctx context.Context) (string, []elbtypes.SubnetMapping, error) {
	lb := s.cur.lb
	if lb == nil {
		return s.network(ctx)
	}
	reason := ""
	annotated := s.cur.tags[aws.ToString(lb.LoadBalancerArn)][TagSubnets] == subnetsByAnnotaton
	switch {
	case lb.State != nil && lb.State.Code == elbtypes.LoadBalancerStateEnumFailed:
		reason = "failedState"
	case lb.Scheme != s.plan.scheme:
		reason = "scheme"
	case lb.IpAddressType != s.plan.ipType:
		reason = "ipAddressType"
	case len(s.plan.subnets) > 0 && !sameSet(lbSubnets(lb), s.plan.subnets):
		reason = "subnets"
	case !sameSet(lbAllocations(lb), s.plan.eips):
		reason = "eipAllocations"
	case len(s.plan.subnets) == 0 && annotated:
		// The annotation is gone: back to the discovered subnets.
		reason = "subnets"
	}
	if reason == "" {
		return aws.ToString(lb.VpcId), nil, nil
	}
	vpc, mappings, err := s.network(ctx)
	if err != nil {
		return "", nil, err
	}
	if reason == "subnets" && len(s.plan.subnets) == 0 && len(s.plan.eips) == 0 && sameSet(lbSubnets(lb), mappingSubnets(mappings)) {
		return aws.ToString(lb.VpcId), nil, nil // the annotation named the discovered subnets
	}
	if vpc != aws.ToString(lb.VpcId) {
		return "", nil, providers.Configf("InvalidAnnotation", "the new subnets are in VPC %s but load balancer %s and its target groups are in VPC %s; a Service cannot move between VPCs, delete and recreate it", vpc, s.plan.name, aws.ToString(lb.VpcId))
	}
	s.log.Info("Replacing load balancer: a setting AWS cannot change in place differs", "setting", reason)
	if _, err := s.p.elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}); err != nil {
		return "", nil, s.p.classify("deleting load balancer "+s.plan.name+" to change its "+reason, err)
	}
	s.cur.lb, s.cur.listeners, s.cur.attached = nil, map[int32]elbtypes.Listener{}, nil
	return vpc, mappings, nil
}

func mappingSubnets(ms []elbtypes.SubnetMapping) []string {
	var out []string
	for _, m := range ms {
		out = append(out, aws.ToString(m.SubnetId))
	}
	return out
}

// network resolves the VPC and subnet mappings of a new load balancer.
func (s *ensureRun) network(ctx context.Context) (string, []elbtypes.SubnetMapping, error) {
	vpc, subnets, err := s.p.resolveSubnets(ctx, s.plan)
	if err != nil {
		return "", nil, err
	}
	if len(s.plan.eips) > 0 && len(s.plan.eips) != len(subnets) {
		return "", nil, providers.Configf("InvalidAnnotation", "%s lists %d allocations but the load balancer has %d subnets (%v); give one per subnet",
			AnnotationEIPAllocations, len(s.plan.eips), len(subnets), subnets)
	}
	var out []elbtypes.SubnetMapping
	for i, id := range subnets {
		m := elbtypes.SubnetMapping{SubnetId: aws.String(id)}
		if len(s.plan.eips) > 0 {
			m.AllocationId = aws.String(s.plan.eips[i])
		}
		out = append(out, m)
	}
	return vpc, out, nil
}

func (s *ensureRun) ensureLoadBalancer(ctx context.Context, mappings []elbtypes.SubnetMapping) error {
	if s.cur.lb != nil {
		return nil
	}
	s.log.Info("Creating load balancer", "scheme", s.plan.scheme)
	tags := elbTags(s.key)
	if len(s.plan.subnets) > 0 {
		tags = append(tags, elbtypes.Tag{Key: aws.String(TagSubnets), Value: aws.String(subnetsByAnnotaton)})
	}
	in := &elbv2.CreateLoadBalancerInput{
		Name:           aws.String(s.plan.name),
		Type:           elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme:         s.plan.scheme,
		IpAddressType:  s.plan.ipType,
		SubnetMappings: mappings,
		Tags:           tags,
	}
	if s.sgID != "" {
		in.SecurityGroups = []string{s.sgID}
	}
	if s.backendSG != "" {
		in.SecurityGroups = append(in.SecurityGroups, s.backendSG)
	}
	out, err := s.p.elb.CreateLoadBalancer(ctx, in)
	if err != nil {
		return s.p.classify("creating load balancer "+s.plan.name, err)
	}
	if len(out.LoadBalancers) != 1 {
		return fmt.Errorf("creating load balancer %s: AWS returned %d load balancers", s.plan.name, len(out.LoadBalancers))
	}
	s.cur.lb = &out.LoadBalancers[0]
	s.created = true
	return nil
}

// attachBackendGroup adds the backend group to a load balancer made
// without it (by an earlier Portico) that carries Portico's own group; AWS
// lets an NLB change its security groups only when it was created with some.
func (s *ensureRun) attachBackendGroup(ctx context.Context) error {
	lb := s.cur.lb
	if s.backendSG == "" || s.sgID == "" || len(lb.SecurityGroups) == 0 || slices.Contains(lb.SecurityGroups, s.backendSG) {
		return nil
	}
	want := append(slices.Clone(lb.SecurityGroups), s.backendSG)
	s.log.Info("Adding the backend security group to the load balancer", "securityGroup", s.backendSG)
	if _, err := s.p.elb.SetSecurityGroups(ctx, &elbv2.SetSecurityGroupsInput{LoadBalancerArn: lb.LoadBalancerArn, SecurityGroups: want}); err != nil {
		return s.p.classify("adding security group "+s.backendSG+" to load balancer "+s.plan.name, err)
	}
	lb.SecurityGroups = want
	return nil
}

func (s *ensureRun) ensureCrossZone(ctx context.Context) error {
	want := strconv.FormatBool(s.plan.crossZone)
	arn := s.cur.lb.LoadBalancerArn
	switch {
	case s.created && !s.plan.crossZone:
		return nil // a new NLB starts with cross-zone load balancing off
	case !s.created:
		out, err := s.p.elb.DescribeLoadBalancerAttributes(ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: arn})
		if err != nil {
			return s.p.classify("reading load balancer attributes", err)
		}
		for _, a := range out.Attributes {
			if aws.ToString(a.Key) == attrCrossZone && aws.ToString(a.Value) == want {
				return nil
			}
		}
	}
	s.log.Info("Setting cross-zone load balancing", "enabled", s.plan.crossZone)
	_, err := s.p.elb.ModifyLoadBalancerAttributes(ctx, &elbv2.ModifyLoadBalancerAttributesInput{
		LoadBalancerArn: arn,
		Attributes:      []elbtypes.LoadBalancerAttribute{{Key: aws.String(attrCrossZone), Value: aws.String(want)}},
	})
	if err != nil {
		return s.p.classify("setting cross-zone load balancing", err)
	}
	return nil
}

func (s *ensureRun) ensureTargetGroups(ctx context.Context, vpc string) error {
	s.groups, s.fresh = map[string]elbtypes.TargetGroup{}, map[string]bool{}
	for _, name := range sortedKeys(s.plan.groups) {
		g := s.plan.groups[name]
		have, ok := s.cur.groups[name]
		if !ok {
			s.log.Info("Creating target group", "targetGroup", name)
			out, err := s.p.elb.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{
				Name:                       aws.String(name),
				Protocol:                   g.protocol,
				Port:                       aws.Int32(g.port),
				VpcId:                      aws.String(vpc),
				TargetType:                 g.targetType,
				HealthCheckEnabled:         aws.Bool(true),
				HealthCheckProtocol:        elbtypes.ProtocolEnum(g.health.protocol),
				HealthCheckPort:            aws.String(g.health.port),
				HealthCheckPath:            optional(g.health.path),
				HealthCheckIntervalSeconds: aws.Int32(g.health.interval),
				HealthCheckTimeoutSeconds:  aws.Int32(g.health.timeout),
				HealthyThresholdCount:      aws.Int32(g.health.healthy),
				UnhealthyThresholdCount:    aws.Int32(g.health.unhealthy),
				Tags:                       elbTags(s.key),
			})
			if err != nil {
				return s.p.classify("creating target group "+name, err)
			}
			if len(out.TargetGroups) != 1 {
				return fmt.Errorf("creating target group %s: AWS returned %d groups", name, len(out.TargetGroups))
			}
			have = out.TargetGroups[0]
			s.fresh[name] = true
		} else if !healthMatches(have, g.health) {
			s.log.Info("Updating target group health check", "targetGroup", name)
			out, err := s.p.elb.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{
				TargetGroupArn:             have.TargetGroupArn,
				HealthCheckProtocol:        elbtypes.ProtocolEnum(g.health.protocol),
				HealthCheckPort:            aws.String(g.health.port),
				HealthCheckPath:            optional(g.health.path),
				HealthCheckIntervalSeconds: aws.Int32(g.health.interval),
				HealthCheckTimeoutSeconds:  aws.Int32(g.health.timeout),
				HealthyThresholdCount:      aws.Int32(g.health.healthy),
				UnhealthyThresholdCount:    aws.Int32(g.health.unhealthy),
			})
			if err != nil {
				return s.p.classify("updating health check of target group "+name, err)
			}
			if len(out.TargetGroups) == 1 {
				have = out.TargetGroups[0]
			}
		}
		s.groups[name] = have
		if err := s.ensureProxyProtocol(ctx, name, have, g.proxyProtocol); err != nil {
			return err
		}
	}
	return nil
}

func (s *ensureRun) ensureProxyProtocol(ctx context.Context, name string, g elbtypes.TargetGroup, enabled bool) error {
	want := strconv.FormatBool(enabled)
	if s.fresh[name] && !enabled {
		return nil // new target groups start without proxy protocol
	}
	if !s.fresh[name] {
		out, err := s.p.elb.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: g.TargetGroupArn})
		if err != nil {
			return s.p.classify("reading attributes of target group "+name, err)
		}
		for _, a := range out.Attributes {
			if aws.ToString(a.Key) == attrProxyProtocol && aws.ToString(a.Value) == want {
				return nil
			}
		}
	}
	s.log.Info("Setting proxy protocol v2", "targetGroup", name, "enabled", enabled)
	_, err := s.p.elb.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{
		TargetGroupArn: g.TargetGroupArn,
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: aws.String(attrProxyProtocol), Value: aws.String(want)}},
	})
	if err != nil {
		return s.p.classify("setting proxy protocol on target group "+name, err)
	}
	return nil
}

// ensureTargets registers every missing target in every group before it
// deregisters any stale one, so that a node change never leaves a port
// without targets.
func (s *ensureRun) ensureTargets(ctx context.Context) error {
	stale := map[string][]elbtypes.TargetDescription{}
	for _, name := range sortedKeys(s.plan.groups) {
		g, arn := s.plan.groups[name], s.groups[name].TargetGroupArn
		have := map[target]bool{}
		states := map[target]elbtypes.TargetHealthStateEnum{}
		if !s.fresh[name] {
			out, err := s.p.elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: arn})
			if err != nil {
				return s.p.classify("reading targets of target group "+name, err)
			}
			for _, h := range out.TargetHealthDescriptions {
				if h.TargetHealth != nil && h.TargetHealth.State == elbtypes.TargetHealthStateEnumDraining {
					continue // on its way out; registering it again revives it
				}
				t := target{id: aws.ToString(h.Target.Id), port: aws.ToInt32(h.Target.Port)}
				have[t] = true
				if h.TargetHealth != nil {
					states[t] = h.TargetHealth.State
				}
			}
		}
		// Report the targets as they will be once this run is done: the
		// planned ones, with the health AWS reported or "initial".
		var after []elbtypes.TargetHealthDescription
		for _, t := range g.targets {
			state, ok := states[t]
			if !ok {
				state = elbtypes.TargetHealthStateEnumInitial
			}
			after = append(after, elbtypes.TargetHealthDescription{Target: &elbtypes.TargetDescription{Id: aws.String(t.id), Port: aws.Int32(t.port)}, TargetHealth: &elbtypes.TargetHealth{State: state}})
		}
		s.health[aws.ToString(arn)] = after
		var add []elbtypes.TargetDescription
		want := map[target]bool{}
		for _, t := range g.targets {
			want[t] = true
			if !have[t] {
				add = append(add, targetDescription(t))
			}
		}
		for _, t := range sortedTargets(have) {
			if !want[t] {
				stale[name] = append(stale[name], targetDescription(t))
			}
		}
		if len(add) > 0 {
			s.log.Info("Registering targets", "targetGroup", name, "count", len(add))
			if _, err := s.p.elb.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: arn, Targets: add}); err != nil {
				return s.p.classify("registering targets in "+name, err)
			}
		}
	}
	for _, name := range sortedKeys(stale) {
		s.log.Info("Deregistering targets", "targetGroup", name, "count", len(stale[name]))
		if _, err := s.p.elb.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: s.groups[name].TargetGroupArn, Targets: stale[name]}); err != nil {
			return s.p.classify("deregistering targets from "+name, err)
		}
	}
	return nil
}

func (s *ensureRun) ensureListeners(ctx context.Context) error {
	lbARN := s.cur.lb.LoadBalancerArn
	planned := map[int32]bool{}
	for _, lp := range s.plan.listeners {
		planned[lp.port] = true
		groupARN := s.groups[lp.group].TargetGroupArn
		actions := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: groupARN}}
		var certs []elbtypes.Certificate
		if lp.cert != "" {
			certs = []elbtypes.Certificate{{CertificateArn: aws.String(lp.cert)}}
		}
		have, ok := s.cur.listeners[lp.port]
		switch {
		case !ok:
			s.log.Info("Creating listener", "port", lp.port, "protocol", lp.protocol)
			out, err := s.p.elb.CreateListener(ctx, &elbv2.CreateListenerInput{
				LoadBalancerArn: lbARN, Port: aws.Int32(lp.port), Protocol: lp.protocol, DefaultActions: actions,
				Certificates: certs, SslPolicy: optional(lp.policy), Tags: elbTags(s.key),
			})
			if err != nil {
				return s.p.classify(fmt.Sprintf("creating listener %s:%d", lp.protocol, lp.port), err)
			}
			if len(out.Listeners) == 1 {
				have = out.Listeners[0]
			}
		case !listenerMatches(have, lp, aws.ToString(groupARN)):
			s.log.Info("Updating listener", "port", lp.port, "protocol", lp.protocol)
			out, err := s.p.elb.ModifyListener(ctx, &elbv2.ModifyListenerInput{
				ListenerArn: have.ListenerArn, Port: aws.Int32(lp.port), Protocol: lp.protocol, DefaultActions: actions,
				Certificates: certs, SslPolicy: optional(lp.policy),
			})
			if err != nil {
				return s.p.classify(fmt.Sprintf("updating listener %s:%d", lp.protocol, lp.port), err)
			}
			if len(out.Listeners) == 1 {
				have = out.Listeners[0]
			}
		}
		s.listeners = append(s.listeners, have)
	}
	for _, port := range sortedKeys(s.cur.listeners) {
		if planned[port] {
			continue
		}
		s.log.Info("Deleting listener", "port", port)
		_, err := s.p.elb.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: s.cur.listeners[port].ListenerArn})
		if err != nil && apiCode(err) != codeListenerNotFound {
			return s.p.classify(fmt.Sprintf("deleting listener on port %d", port), err)
		}
	}
	return nil
}

// deleteStaleGroups removes target groups that listeners used before this
// run and no longer do.
func (s *ensureRun) deleteStaleGroups(ctx context.Context) error {
	for _, name := range s.cur.attached {
		if _, planned := s.plan.groups[name]; planned {
			continue
		}
		s.log.Info("Deleting target group", "targetGroup", name)
		arn := s.cur.groups[name].TargetGroupArn
		_, err := s.p.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: arn})
		if err := s.p.groupDeleted(aws.ToString(arn), "deleting target group "+name, err); err != nil {
			return err
		}
	}
	return nil
}

// sweepOrphanGroups deletes target groups under the Service's name prefix
// that no listener uses and the plan does not want: what a run interrupted
// between moving a listener and deleting its old group leaves behind. It runs
// once per load balancer per process and after any failed Ensure, so a
// steady-state resync does not list the account's target groups.
func (s *ensureRun) sweepOrphanGroups(ctx context.Context) error {
	all := s.cur.prefixed
	if !s.cur.listed {
		var err error
		if all, err = s.p.groupsByPrefix(ctx, targetGroupPrefix(s.key)); err != nil {
			return err
		}
	}
	var orphans []elbtypes.TargetGroup
	var arns []string
	for _, g := range all {
		if _, planned := s.plan.groups[aws.ToString(g.TargetGroupName)]; planned || len(g.LoadBalancerArns) > 0 {
			continue
		}
		orphans = append(orphans, g)
		arns = append(arns, aws.ToString(g.TargetGroupArn))
	}
	tags, err := s.p.describeTags(ctx, arns)
	if err != nil {
		return err
	}
	for _, g := range orphans {
		if !providers.Owns(tags[aws.ToString(g.TargetGroupArn)], s.key) {
			continue
		}
		s.log.Info("Deleting unused target group", "targetGroup", aws.ToString(g.TargetGroupName))
		_, err := s.p.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: g.TargetGroupArn})
		if err := s.p.groupDeleted(aws.ToString(g.TargetGroupArn), "deleting unused target group "+aws.ToString(g.TargetGroupName), err); err != nil {
			return err
		}
	}
	return nil
}

// ---- helpers ----

func healthMatches(g elbtypes.TargetGroup, h healthCheck) bool {
	return string(g.HealthCheckProtocol) == h.protocol && aws.ToString(g.HealthCheckPort) == h.port &&
		aws.ToString(g.HealthCheckPath) == h.path && aws.ToInt32(g.HealthCheckIntervalSeconds) == h.interval &&
		aws.ToInt32(g.HealthCheckTimeoutSeconds) == h.timeout && aws.ToInt32(g.HealthyThresholdCount) == h.healthy &&
		aws.ToInt32(g.UnhealthyThresholdCount) == h.unhealthy
}

func listenerMatches(l elbtypes.Listener, lp listenerPlan, groupARN string) bool {
	if l.Protocol != lp.protocol || len(l.DefaultActions) != 1 || aws.ToString(l.DefaultActions[0].TargetGroupArn) != groupARN {
		return false
	}
	if lp.cert == "" {
		return true
	}
	return len(l.Certificates) == 1 && aws.ToString(l.Certificates[0].CertificateArn) == lp.cert && aws.ToString(l.SslPolicy) == lp.policy
}

func targetDescription(t target) elbtypes.TargetDescription {
	return elbtypes.TargetDescription{Id: aws.String(t.id), Port: aws.Int32(t.port)}
}

func sortedTargets(m map[target]bool) []target {
	out := make([]target, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	return sortTargets(out)
}

func elbTags(key providers.Key) []elbtypes.Tag {
	tags := providers.OwnershipTags(key)
	var out []elbtypes.Tag
	for _, k := range sortedKeys(tags) {
		out = append(out, elbtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

func lbSubnets(lb *elbtypes.LoadBalancer) []string {
	var out []string
	for _, z := range lb.AvailabilityZones {
		out = append(out, aws.ToString(z.SubnetId))
	}
	return out
}

func lbAllocations(lb *elbtypes.LoadBalancer) []string {
	var out []string
	for _, z := range lb.AvailabilityZones {
		for _, a := range z.LoadBalancerAddresses {
			if id := aws.ToString(a.AllocationId); id != "" {
				out = append(out, id)
			}
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sortedKeys[K ~string | ~int32, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
