package awsfake

import (
	"encoding/xml"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portico-lb/portico/internal/fault"
)

// LoadBalancer is a Network Load Balancer in the fake.
type LoadBalancer struct {
	ARN, Name, DNSName, Scheme, IPAddressType, VPCID string
	Zones                                            []Zone
	SecurityGroups                                   []string
	Tags                                             map[string]string
	Attributes                                       map[string]string
	Created                                          time.Time
	// ActiveAt is when provisioning ends; Failed is the operation fault it
	// ends with (fault.None: active).
	ActiveAt time.Time
	Failed   fault.Kind
}

// State is the load balancer's state code at now
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_LoadBalancerState.html).
func (lb *LoadBalancer) State(now time.Time) string {
	switch {
	case now.Before(lb.ActiveAt):
		return "provisioning"
	case lb.Failed != fault.None:
		return "failed"
	}
	return "active"
}

// Zone is one subnet mapping of a load balancer.
type Zone struct {
	Zone, SubnetID, AllocationID, IP string
}

// TargetGroup is a target group in the fake.
type TargetGroup struct {
	ARN, Name, Protocol, TargetType, VPCID string
	Port                                   int
	HealthCheck                            HealthCheck
	Targets                                []Target
	Tags                                   map[string]string
	Attributes                             map[string]string
	Created                                time.Time
}

// HealthCheck is a target group's health check.
type HealthCheck struct {
	Protocol, Port, Path                            string
	Interval, Timeout, HealthyCount, UnhealthyCount int
}

// Target is one registered target; Drained is set when it was deregistered
// and is draining until then. Registered is when health checks started.
type Target struct {
	ID         string
	Port       int
	Drained    time.Time
	Registered time.Time
}

// Listener is a listener in the fake.
type Listener struct {
	ARN, LoadBalancerARN, Protocol, TargetGroupARN, Certificate, SSLPolicy string
	Port                                                                   int
	Tags                                                                   map[string]string
}

var (
	elbNameRE     = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?$`)
	instanceIDRE  = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	protocolsNLB  = map[string]bool{"TCP": true, "UDP": true, "TCP_UDP": true, "TLS": true}
	listenerToTGs = map[string]map[string]bool{
		"TCP": {"TCP": true, "TCP_UDP": true}, "TLS": {"TCP": true, "TLS": true},
		"UDP": {"UDP": true, "TCP_UDP": true}, "TCP_UDP": {"TCP_UDP": true},
	}
)

func (f *Fake) elbv2(action string, form url.Values) (any, *apiError) {
	switch action {
	case "DescribeLoadBalancers":
		return f.describeLoadBalancers(form)
	case "CreateLoadBalancer":
		return f.createLoadBalancer(form)
	case "DeleteLoadBalancer":
		return f.deleteLoadBalancer(form)
	case "DescribeLoadBalancerAttributes", "ModifyLoadBalancerAttributes":
		return f.loadBalancerAttributes(action, form)
	case "DescribeTags":
		return f.describeTags(form)
	case "SetSecurityGroups":
		return f.setSecurityGroups(form)
	case "DescribeTargetGroups":
		return f.describeTargetGroups(form)
	case "CreateTargetGroup":
		return f.createTargetGroup(form)
	case "ModifyTargetGroup":
		return f.modifyTargetGroup(form)
	case "DeleteTargetGroup":
		return f.deleteTargetGroup(form)
	case "DescribeTargetGroupAttributes", "ModifyTargetGroupAttributes":
		return f.targetGroupAttributes(action, form)
	case "DescribeTargetHealth":
		return f.describeTargetHealth(form)
	case "RegisterTargets", "DeregisterTargets":
		return f.changeTargets(action, form)
	case "DescribeListeners":
		return f.describeListeners(form)
	case "CreateListener":
		return f.createListener(form)
	case "ModifyListener":
		return f.modifyListener(form)
	case "DeleteListener":
		return f.deleteListener(form)
	}
	return nil, badRequest("InvalidAction", "The action %s is not valid for this endpoint.", action)
}

// ---- XML shapes (as the SDK's awsquery deserialisers read them) ----

type xLoadBalancer struct {
	LoadBalancerArn       string
	DNSName               string
	CanonicalHostedZoneId string
	LoadBalancerName      string
	Scheme                string
	VpcId                 string
	State                 struct{ Code string }
	Type                  string
	AvailabilityZones     []xZone  `xml:"AvailabilityZones>member"`
	SecurityGroups        []string `xml:"SecurityGroups>member"`
	IpAddressType         string
}

type xZone struct {
	ZoneName              string
	SubnetId              string
	LoadBalancerAddresses []xAddress `xml:"LoadBalancerAddresses>member,omitempty"`
}

type xAddress struct {
	IpAddress    string `xml:",omitempty"`
	AllocationId string `xml:",omitempty"`
}

type xTargetGroup struct {
	TargetGroupArn             string
	TargetGroupName            string
	Protocol                   string
	Port                       int
	VpcId                      string
	HealthCheckProtocol        string
	HealthCheckPort            string
	HealthCheckEnabled         bool
	HealthCheckIntervalSeconds int
	HealthCheckTimeoutSeconds  int
	HealthyThresholdCount      int
	UnhealthyThresholdCount    int
	HealthCheckPath            string   `xml:",omitempty"`
	LoadBalancerArns           []string `xml:"LoadBalancerArns>member"`
	TargetType                 string
	IpAddressType              string
}

type xListener struct {
	ListenerArn     string
	LoadBalancerArn string
	Port            int
	Protocol        string
	Certificates    []xCertificate `xml:"Certificates>member,omitempty"`
	SslPolicy       string         `xml:",omitempty"`
	DefaultActions  []xAction      `xml:"DefaultActions>member"`
}

type xCertificate struct{ CertificateArn string }

type xAction struct {
	Type           string
	TargetGroupArn string
}

type xTag struct{ Key, Value string }

type xAttribute struct{ Key, Value string }

func (f *Fake) xLB(lb *LoadBalancer) xLoadBalancer {
	x := xLoadBalancer{
		LoadBalancerArn: lb.ARN, DNSName: lb.DNSName, CanonicalHostedZoneId: "Z26RNL4JYFTOTI",
		LoadBalancerName: lb.Name, Scheme: lb.Scheme, VpcId: lb.VPCID, Type: "network",
		SecurityGroups: lb.SecurityGroups, IpAddressType: lb.IPAddressType,
	}
	x.State.Code = lb.State(f.now())
	for _, z := range lb.Zones {
		xz := xZone{ZoneName: z.Zone, SubnetId: z.SubnetID}
		if z.AllocationID != "" {
			xz.LoadBalancerAddresses = []xAddress{{IpAddress: z.IP, AllocationId: z.AllocationID}}
		}
		x.AvailabilityZones = append(x.AvailabilityZones, xz)
	}
	return x
}

func (f *Fake) xTG(tg *TargetGroup) xTargetGroup {
	x := xTargetGroup{
		TargetGroupArn: tg.ARN, TargetGroupName: tg.Name, Protocol: tg.Protocol, Port: tg.Port, VpcId: tg.VPCID,
		HealthCheckProtocol: tg.HealthCheck.Protocol, HealthCheckPort: tg.HealthCheck.Port, HealthCheckEnabled: true,
		HealthCheckIntervalSeconds: tg.HealthCheck.Interval, HealthCheckTimeoutSeconds: tg.HealthCheck.Timeout,
		HealthyThresholdCount: tg.HealthCheck.HealthyCount, UnhealthyThresholdCount: tg.HealthCheck.UnhealthyCount,
		HealthCheckPath: tg.HealthCheck.Path, TargetType: tg.TargetType, IpAddressType: "ipv4",
	}
	x.LoadBalancerArns = f.groupLoadBalancers(tg.ARN)
	return x
}

func xL(l *Listener) xListener {
	x := xListener{
		ListenerArn: l.ARN, LoadBalancerArn: l.LoadBalancerARN, Port: l.Port, Protocol: l.Protocol, SslPolicy: l.SSLPolicy,
		DefaultActions: []xAction{{Type: "forward", TargetGroupArn: l.TargetGroupARN}},
	}
	if l.Certificate != "" {
		x.Certificates = []xCertificate{{CertificateArn: l.Certificate}}
	}
	return x
}

// ---- load balancers ----

func (f *Fake) describeLoadBalancers(form url.Values) (any, *apiError) {
	names := stringList(form, "Names")
	arns := stringList(form, "LoadBalancerArns")
	var out []xLoadBalancer
	switch {
	case len(names) > 0:
		for _, n := range names {
			lb := f.lbByName(n)
			if lb == nil || !f.visible(lb.Created) {
				return nil, badRequest("LoadBalancerNotFound", "Load balancers '[%s]' not found", n)
			}
			out = append(out, f.xLB(lb))
		}
	case len(arns) > 0:
		for _, a := range arns {
			lb := f.lbs[a]
			if lb == nil || !f.visible(lb.Created) {
				return nil, badRequest("LoadBalancerNotFound", "One or more load balancers not found")
			}
			out = append(out, f.xLB(lb))
		}
	default:
		for _, lb := range f.lbs {
			if f.visible(lb.Created) {
				out = append(out, f.xLB(lb))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].LoadBalancerName < out[j].LoadBalancerName })
	}
	size, aerr := intParam(form, "PageSize", 0)
	if aerr != nil {
		return nil, aerr
	}
	pg, next, aerr := page(out, form.Get("Marker"), f.pageSize(size, 400))
	if aerr != nil {
		return nil, aerr
	}
	return &struct {
		XMLName       xml.Name        `xml:"result"`
		LoadBalancers []xLoadBalancer `xml:"LoadBalancers>member"`
		NextMarker    string          `xml:",omitempty"`
	}{LoadBalancers: pg, NextMarker: next}, nil
}

func (f *Fake) lbByName(name string) *LoadBalancer {
	for _, lb := range f.lbs {
		if lb.Name == name {
			return lb
		}
	}
	return nil
}

func (f *Fake) newLoadBalancer(name, scheme, ipType, vpc string, tags map[string]string) *LoadBalancer {
	id := randHex(16)
	lb := &LoadBalancer{
		ARN:     fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:loadbalancer/net/%s/%s", f.opts.Region, f.opts.AccountID, name, id),
		Name:    name,
		DNSName: fmt.Sprintf("%s-%s.elb.%s.amazonaws.com", name, id[:10], f.opts.Region),
		Scheme:  scheme, IPAddressType: ipType, VPCID: vpc, Tags: cloneTags(tags),
		Attributes: map[string]string{"load_balancing.cross_zone.enabled": "false", "deletion_protection.enabled": "false"},
		Created:    f.now(),
	}
	f.lbs[lb.ARN] = lb
	return lb
}

func (f *Fake) createLoadBalancer(form url.Values) (any, *apiError) {
	name := form.Get("Name")
	// At most 32 characters, alphanumerics and hyphens, not starting or
	// ending with a hyphen, not starting with "internal-"
	// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html).
	if !elbNameRE.MatchString(name) || strings.HasPrefix(name, "internal-") {
		return nil, badRequest("ValidationError", "Load balancer name '%s' is not valid: at most 32 alphanumeric characters or hyphens, not starting or ending with a hyphen", name)
	}
	if t := form.Get("Type"); t != "network" {
		return nil, badRequest("ValidationError", "the fake only serves network load balancers, got type %q", t)
	}
	scheme := form.Get("Scheme")
	if scheme == "" {
		scheme = "internet-facing"
	}
	if scheme != "internet-facing" && scheme != "internal" {
		return nil, badRequest("ValidationError", "invalid scheme %q", scheme)
	}
	ipType := form.Get("IpAddressType")
	if ipType == "" {
		ipType = "ipv4"
	}
	if ipType != "ipv4" && ipType != "dualstack" {
		return nil, badRequest("ValidationError", "invalid IpAddressType %q", ipType)
	}
	tags := tagList(form, "Tags")
	if aerr := checkELBTags(tags); aerr != nil {
		return nil, aerr
	}

	var zones []Zone
	for _, s := range stringList(form, "Subnets") {
		zones = append(zones, Zone{SubnetID: s})
	}
	for _, m := range members(form, "SubnetMappings") {
		zones = append(zones, Zone{SubnetID: form.Get(m + ".SubnetId"), AllocationID: form.Get(m + ".AllocationId")})
	}
	if len(zones) == 0 {
		return nil, badRequest("ValidationError", "at least one subnet must be specified")
	}
	vpc := ""
	seenZone := map[string]bool{}
	// Every subnet must exist (SubnetNotFound), all in one VPC, at most one
	// per Availability Zone (InvalidConfigurationRequest)
	// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html).
	for i := range zones {
		z := &zones[i]
		sn := f.subnets[z.SubnetID]
		if sn == nil {
			return nil, badRequest("SubnetNotFound", "The subnet ID '%s' is not valid", z.SubnetID)
		}
		if vpc != "" && sn.VPCID != vpc {
			return nil, badRequest("InvalidConfigurationRequest", "subnets must all be in the same VPC")
		}
		vpc = sn.VPCID
		if seenZone[sn.Zone] {
			return nil, badRequest("InvalidConfigurationRequest", "You cannot specify multiple subnets in the same Availability Zone")
		}
		seenZone[sn.Zone] = true
		z.Zone = sn.Zone
		if z.AllocationID != "" {
			if scheme != "internet-facing" {
				return nil, badRequest("InvalidConfigurationRequest", "Elastic IP addresses can only be used with internet-facing load balancers")
			}
			ip, ok := f.eips[z.AllocationID]
			if !ok {
				return nil, badRequest("AllocationIdNotFound", "The allocation ID '%s' does not exist", z.AllocationID)
			}
			z.IP = ip
		}
	}
	sgs := stringList(form, "SecurityGroups")
	for _, id := range sgs {
		sg := f.sgs[id]
		if sg == nil || sg.VPCID != vpc {
			return nil, badRequest("InvalidSecurityGroup", "Security group '%s' does not exist in VPC '%s'", id, vpc)
		}
	}

	if lb := f.lbByName(name); lb != nil {
		// CreateLoadBalancer is idempotent for identical settings.
		if lb.Scheme == scheme && lb.IPAddressType == ipType && sameTags(lb.Tags, tags) && sameZones(lb.Zones, zones) {
			return f.lbResult(lb), nil
		}
		return nil, badRequest("DuplicateLoadBalancerName", "A load balancer with the name '%s' already exists", name)
	}
	if n := f.countUsedAllocations(zones); n > 0 {
		return nil, badRequest("InvalidConfigurationRequest", "an Elastic IP allocation is already associated with another load balancer")
	}
	lb := f.newLoadBalancer(name, scheme, ipType, vpc, tags)
	lb.Zones = zones
	lb.SecurityGroups = sgs
	// A new load balancer is "provisioning" until AWS has set it up, then
	// "active", or "failed" when the operation fails
	// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_LoadBalancerState.html).
	op := f.faults.StartOperation(fault.Request{Service: "elbv2", Op: "CreateLoadBalancer", Mutating: true})
	lb.ActiveAt, lb.Failed = op.Due.Add(f.seconds(provisioningSeconds)), op.Fail
	return f.lbResult(lb), nil
}

func (f *Fake) countUsedAllocations(zones []Zone) int {
	n := 0
	for _, z := range zones {
		if z.AllocationID == "" {
			continue
		}
		for _, lb := range f.lbs {
			for _, oz := range lb.Zones {
				if oz.AllocationID == z.AllocationID {
					n++
				}
			}
		}
	}
	return n
}

func sameZones(a, b []Zone) bool {
	key := func(zs []Zone) string {
		var s []string
		for _, z := range zs {
			s = append(s, z.SubnetID+"/"+z.AllocationID)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	return key(a) == key(b)
}

func (f *Fake) lbResult(lb *LoadBalancer) any {
	return &struct {
		XMLName       xml.Name        `xml:"result"`
		LoadBalancers []xLoadBalancer `xml:"LoadBalancers>member"`
	}{LoadBalancers: []xLoadBalancer{f.xLB(lb)}}
}

func empty() any {
	return &struct {
		XMLName xml.Name `xml:"result"`
	}{}
}

func (f *Fake) deleteLoadBalancer(form url.Values) (any, *apiError) {
	arn := form.Get("LoadBalancerArn")
	lb := f.lbs[arn]
	if lb == nil {
		return empty(), nil // deleting a missing load balancer succeeds
	}
	if lb.Attributes["deletion_protection.enabled"] == "true" {
		return nil, badRequest("OperationNotPermitted", "Load balancer '%s' cannot be deleted because deletion protection is enabled", arn)
	}
	// Its target groups stay "in use" for a while, as its security groups.
	for _, tgARN := range f.groupLoadBalancersOf(arn) {
		f.tgHeld[tgARN] = f.now().Add(f.opts.Consistency)
	}
	for la, l := range f.listeners {
		if l.LoadBalancerARN == arn {
			delete(f.listeners, la)
		}
	}
	// The load balancer's network interfaces hold its security groups for a
	// while after deletion.
	for _, sg := range lb.SecurityGroups {
		f.sgHeld[sg] = f.now().Add(f.opts.Consistency)
	}
	delete(f.lbs, arn)
	return empty(), nil
}

var lbAttributes = map[string]bool{
	"load_balancing.cross_zone.enabled": true, "deletion_protection.enabled": true,
	"dns_record.client_routing_policy": true, "access_logs.s3.enabled": true,
}

func (f *Fake) loadBalancerAttributes(action string, form url.Values) (any, *apiError) {
	lb := f.lbs[form.Get("LoadBalancerArn")]
	if lb == nil {
		return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", form.Get("LoadBalancerArn"))
	}
	if action == "ModifyLoadBalancerAttributes" {
		for _, m := range members(form, "Attributes") {
			k, v := form.Get(m+".Key"), form.Get(m+".Value")
			if !lbAttributes[k] {
				return nil, badRequest("InvalidConfigurationRequest", "Load balancer attribute key '%s' is not recognized", k)
			}
			lb.Attributes[k] = v
		}
	}
	return &struct {
		XMLName    xml.Name     `xml:"result"`
		Attributes []xAttribute `xml:"Attributes>member"`
	}{Attributes: attrList(lb.Attributes)}, nil
}

func attrList(m map[string]string) []xAttribute {
	var out []xAttribute
	for k, v := range m {
		out = append(out, xAttribute{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (f *Fake) describeTags(form url.Values) (any, *apiError) {
	arns := stringList(form, "ResourceArns")
	if len(arns) == 0 || len(arns) > 20 {
		return nil, badRequest("ValidationError", "between 1 and 20 resource ARNs must be given")
	}
	type desc struct {
		ResourceArn string
		Tags        []xTag `xml:"Tags>member"`
	}
	var out []desc
	for _, a := range arns {
		var tags map[string]string
		switch {
		case f.lbs[a] != nil:
			tags = f.lbs[a].Tags
		case f.groups[a] != nil:
			tags = f.groups[a].Tags
		case f.listeners[a] != nil:
			tags = f.listeners[a].Tags
		case strings.Contains(a, ":loadbalancer/"):
			return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", a)
		case strings.Contains(a, ":targetgroup/"):
			return nil, badRequest("TargetGroupNotFound", "Target groups '%s' not found", a)
		default:
			return nil, badRequest("ListenerNotFound", "Listener '%s' not found", a)
		}
		d := desc{ResourceArn: a}
		keys := make([]string, 0, len(tags))
		for k := range tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.Tags = append(d.Tags, xTag{k, tags[k]})
		}
		out = append(out, d)
	}
	return &struct {
		XMLName         xml.Name `xml:"result"`
		TagDescriptions []desc   `xml:"TagDescriptions>member"`
	}{TagDescriptions: out}, nil
}

// ---- target groups ----

func (f *Fake) groupLoadBalancers(tgARN string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range f.listeners {
		if l.TargetGroupARN == tgARN && !seen[l.LoadBalancerARN] {
			seen[l.LoadBalancerARN] = true
			out = append(out, l.LoadBalancerARN)
		}
	}
	sort.Strings(out)
	return out
}

func (f *Fake) describeTargetGroups(form url.Values) (any, *apiError) {
	var out []xTargetGroup
	names := stringList(form, "Names")
	arns := stringList(form, "TargetGroupArns")
	switch lbARN := form.Get("LoadBalancerArn"); {
	case lbARN != "":
		if f.lbs[lbARN] == nil {
			return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", lbARN)
		}
		for _, tg := range f.groups {
			for _, a := range f.groupLoadBalancers(tg.ARN) {
				if a == lbARN {
					out = append(out, f.xTG(tg))
				}
			}
		}
	case len(names) > 0:
		for _, n := range names {
			tg := f.tgByName(n)
			if tg == nil || !f.visible(tg.Created) {
				return nil, badRequest("TargetGroupNotFound", "Target groups '[%s]' not found", n)
			}
			out = append(out, f.xTG(tg))
		}
	case len(arns) > 0:
		for _, a := range arns {
			tg := f.groups[a]
			if tg == nil || !f.visible(tg.Created) {
				return nil, badRequest("TargetGroupNotFound", "Target groups '[%s]' not found", a)
			}
			out = append(out, f.xTG(tg))
		}
	default:
		for _, tg := range f.groups {
			if f.visible(tg.Created) {
				out = append(out, f.xTG(tg))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TargetGroupName < out[j].TargetGroupName })
	size, aerr := intParam(form, "PageSize", 0)
	if aerr != nil {
		return nil, aerr
	}
	pg, next, aerr := page(out, form.Get("Marker"), f.pageSize(size, 400))
	if aerr != nil {
		return nil, aerr
	}
	return &struct {
		XMLName      xml.Name       `xml:"result"`
		TargetGroups []xTargetGroup `xml:"TargetGroups>member"`
		NextMarker   string         `xml:",omitempty"`
	}{TargetGroups: pg, NextMarker: next}, nil
}

func (f *Fake) tgByName(name string) *TargetGroup {
	for _, tg := range f.groups {
		if tg.Name == name {
			return tg
		}
	}
	return nil
}

func healthCheckFrom(form url.Values, base HealthCheck) (HealthCheck, *apiError) {
	hc := base
	if v := form.Get("HealthCheckProtocol"); v != "" {
		hc.Protocol = v
	}
	if v := form.Get("HealthCheckPort"); v != "" {
		hc.Port = v
	}
	if v, ok := form["HealthCheckPath"]; ok {
		hc.Path = v[0]
	}
	var aerr *apiError
	if hc.Interval, aerr = intParam(form, "HealthCheckIntervalSeconds", hc.Interval); aerr != nil {
		return hc, aerr
	}
	if hc.Timeout, aerr = intParam(form, "HealthCheckTimeoutSeconds", hc.Timeout); aerr != nil {
		return hc, aerr
	}
	if hc.HealthyCount, aerr = intParam(form, "HealthyThresholdCount", hc.HealthyCount); aerr != nil {
		return hc, aerr
	}
	if hc.UnhealthyCount, aerr = intParam(form, "UnhealthyThresholdCount", hc.UnhealthyCount); aerr != nil {
		return hc, aerr
	}
	switch {
	case hc.Protocol != "TCP" && hc.Protocol != "HTTP" && hc.Protocol != "HTTPS":
		return hc, badRequest("ValidationError", "health check protocol %q is not valid for a network load balancer", hc.Protocol)
	case hc.Port != "traffic-port" && !validPort(hc.Port):
		return hc, badRequest("ValidationError", "health check port %q is not valid", hc.Port)
	case hc.Interval < 5 || hc.Interval > 300:
		return hc, badRequest("ValidationError", "HealthCheckIntervalSeconds must be between 5 and 300")
	case hc.Timeout < 2 || hc.Timeout > 120:
		return hc, badRequest("ValidationError", "HealthCheckTimeoutSeconds must be between 2 and 120")
	case hc.HealthyCount < 2 || hc.HealthyCount > 10 || hc.UnhealthyCount < 2 || hc.UnhealthyCount > 10:
		return hc, badRequest("ValidationError", "health check thresholds must be between 2 and 10")
	case hc.Protocol == "TCP" && hc.Path != "":
		return hc, badRequest("ValidationError", "a health check path cannot be set with the TCP protocol")
	}
	return hc, nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

func (f *Fake) createTargetGroup(form url.Values) (any, *apiError) {
	name := form.Get("Name")
	// At most 32 characters, alphanumerics and hyphens, not starting or
	// ending with a hyphen
	// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html).
	if !elbNameRE.MatchString(name) {
		return nil, badRequest("ValidationError", "Target group name '%s' is not valid: at most 32 alphanumeric characters or hyphens", name)
	}
	proto := form.Get("Protocol")
	if !protocolsNLB[proto] {
		return nil, badRequest("ValidationError", "protocol %q is not valid for a network load balancer target group", proto)
	}
	port, aerr := intParam(form, "Port", 0)
	if aerr != nil {
		return nil, aerr
	}
	if port < 1 || port > 65535 {
		return nil, badRequest("ValidationError", "target group port %d is not valid", port)
	}
	tt := form.Get("TargetType")
	if tt == "" {
		tt = "instance"
	}
	if tt != "instance" && tt != "ip" {
		return nil, badRequest("ValidationError", "target type %q is not supported by the fake", tt)
	}
	vpc := form.Get("VpcId")
	if vpc == "" {
		return nil, badRequest("ValidationError", "a VPC ID must be specified")
	}
	hc, aerr := healthCheckFrom(form, HealthCheck{Protocol: "TCP", Port: "traffic-port", Interval: 30, Timeout: 10, HealthyCount: 5, UnhealthyCount: 2})
	if aerr != nil {
		return nil, aerr
	}
	tags := tagList(form, "Tags")
	if aerr := checkELBTags(tags); aerr != nil {
		return nil, aerr
	}
	if tg := f.tgByName(name); tg != nil {
		if tg.Protocol == proto && tg.Port == port && tg.VPCID == vpc && tg.TargetType == tt && sameTags(tg.Tags, tags) {
			return f.tgResult(tg), nil
		}
		return nil, badRequest("DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", name)
	}
	tg := &TargetGroup{
		ARN:  fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:targetgroup/%s/%s", f.opts.Region, f.opts.AccountID, name, randHex(16)),
		Name: name, Protocol: proto, Port: port, TargetType: tt, VPCID: vpc, HealthCheck: hc, Tags: tags,
		Attributes: map[string]string{"proxy_protocol_v2.enabled": "false", "deregistration_delay.timeout_seconds": "300"},
		Created:    f.now(),
	}
	f.groups[tg.ARN] = tg
	return f.tgResult(tg), nil
}

func (f *Fake) tgResult(tg *TargetGroup) any {
	return &struct {
		XMLName      xml.Name       `xml:"result"`
		TargetGroups []xTargetGroup `xml:"TargetGroups>member"`
	}{TargetGroups: []xTargetGroup{f.xTG(tg)}}
}

func (f *Fake) modifyTargetGroup(form url.Values) (any, *apiError) {
	tg := f.groups[form.Get("TargetGroupArn")]
	if tg == nil {
		return nil, badRequest("TargetGroupNotFound", "Target groups '%s' not found", form.Get("TargetGroupArn"))
	}
	hc, aerr := healthCheckFrom(form, tg.HealthCheck)
	if aerr != nil {
		return nil, aerr
	}
	tg.HealthCheck = hc
	return f.tgResult(tg), nil
}

func (f *Fake) deleteTargetGroup(form url.Values) (any, *apiError) {
	arn := form.Get("TargetGroupArn")
	if f.groups[arn] == nil {
		return empty(), nil
	}
	// A target group a listener uses cannot be deleted, nor one whose load
	// balancer was deleted a moment ago
	// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DeleteTargetGroup.html).
	if lbs := f.groupLoadBalancers(arn); len(lbs) > 0 {
		return nil, badRequest("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	if until, ok := f.tgHeld[arn]; ok && f.now().Before(until) {
		return nil, badRequest("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	delete(f.tgHeld, arn)
	delete(f.groups, arn)
	return empty(), nil
}

var tgAttributes = map[string]bool{
	"proxy_protocol_v2.enabled": true, "deregistration_delay.timeout_seconds": true,
	"preserve_client_ip.enabled": true, "stickiness.enabled": true, "stickiness.type": true,
}

func (f *Fake) targetGroupAttributes(action string, form url.Values) (any, *apiError) {
	tg := f.groups[form.Get("TargetGroupArn")]
	if tg == nil {
		return nil, badRequest("TargetGroupNotFound", "Target groups '%s' not found", form.Get("TargetGroupArn"))
	}
	if action == "ModifyTargetGroupAttributes" {
		for _, m := range members(form, "Attributes") {
			k, v := form.Get(m+".Key"), form.Get(m+".Value")
			if !tgAttributes[k] {
				return nil, badRequest("InvalidConfigurationRequest", "Target group attribute key '%s' is not recognized", k)
			}
			tg.Attributes[k] = v
		}
	}
	return &struct {
		XMLName    xml.Name     `xml:"result"`
		Attributes []xAttribute `xml:"Attributes>member"`
	}{Attributes: attrList(tg.Attributes)}, nil
}

func (f *Fake) describeTargetHealth(form url.Values) (any, *apiError) {
	tg := f.groups[form.Get("TargetGroupArn")]
	if tg == nil {
		return nil, badRequest("TargetGroupNotFound", "Target groups '%s' not found", form.Get("TargetGroupArn"))
	}
	type desc struct {
		Target struct {
			Id   string
			Port int
		}
		HealthCheckPort string
		TargetHealth    struct {
			State  string
			Reason string `xml:",omitempty"`
		}
	}
	var out []desc
	now := f.now()
	kept := tg.Targets[:0]
	for _, t := range tg.Targets {
		if !t.Drained.IsZero() && !now.Before(t.Drained) {
			continue // drained away
		}
		kept = append(kept, t)
		var d desc
		d.Target.Id, d.Target.Port = t.ID, t.Port
		d.HealthCheckPort = tg.HealthCheck.Port
		if d.HealthCheckPort == "traffic-port" {
			d.HealthCheckPort = strconv.Itoa(t.Port)
		}
		// Target states and reasons:
		// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetHealth.html
		// A target is "initial" until the load balancer has sent it the
		// healthy-threshold count of checks, one per interval
		// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html).
		lbs := f.groupLoadBalancers(tg.ARN)
		switch {
		case !t.Drained.IsZero():
			d.TargetHealth.State, d.TargetHealth.Reason = "draining", "Target.DeregistrationInProgress"
		case len(lbs) == 0:
			d.TargetHealth.State, d.TargetHealth.Reason = "unused", "Target.NotInUse"
		case now.Sub(t.Registered) < f.seconds(tg.HealthCheck.Interval*tg.HealthCheck.HealthyCount):
			d.TargetHealth.State, d.TargetHealth.Reason = "initial", "Elb.InitialHealthChecking"
		case !f.reachable(tg, t, lbs):
			d.TargetHealth.State, d.TargetHealth.Reason = "unhealthy", "Target.Timeout"
		default:
			d.TargetHealth.State = "healthy"
		}
		out = append(out, d)
	}
	tg.Targets = kept
	return &struct {
		XMLName                  xml.Name `xml:"result"`
		TargetHealthDescriptions []desc   `xml:"TargetHealthDescriptions>member"`
	}{TargetHealthDescriptions: out}, nil
}

func (f *Fake) changeTargets(action string, form url.Values) (any, *apiError) {
	tg := f.groups[form.Get("TargetGroupArn")]
	if tg == nil {
		return nil, badRequest("TargetGroupNotFound", "Target groups '%s' not found", form.Get("TargetGroupArn"))
	}
	var targets []Target
	for _, m := range members(form, "Targets") {
		t := Target{ID: form.Get(m + ".Id"), Port: tg.Port, Registered: f.now()}
		if p := form.Get(m + ".Port"); p != "" {
			if !validPort(p) {
				return nil, badRequest("ValidationError", "target port %q is not valid", p)
			}
			t.Port, _ = strconv.Atoi(p)
		}
		if action == "RegisterTargets" {
			if tg.TargetType == "instance" && (!instanceIDRE.MatchString(t.ID) || f.instances[t.ID] == nil) {
				return nil, badRequest("InvalidTarget", "The following targets are not valid instances: '%s'", t.ID)
			}
			if tg.TargetType == "ip" {
				if _, err := netip.ParseAddr(t.ID); err != nil {
					return nil, badRequest("InvalidTarget", "The IP address '%s' is not valid", t.ID)
				}
			}
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, badRequest("ValidationError", "at least one target must be given")
	}
	if action == "RegisterTargets" {
		if aerr := f.checkTargetQuotas(tg, targets); aerr != nil {
			return nil, aerr
		}
	}
	for _, t := range targets {
		i := findTarget(tg.Targets, t)
		switch {
		case action == "RegisterTargets" && i < 0:
			tg.Targets = append(tg.Targets, t)
		case action == "RegisterTargets":
			if !tg.Targets[i].Drained.IsZero() {
				tg.Targets[i].Drained = time.Time{} // re-registering a draining target revives it
				tg.Targets[i].Registered = t.Registered
			}
		case i >= 0 && f.opts.Consistency > 0:
			if tg.Targets[i].Drained.IsZero() {
				tg.Targets[i].Drained = f.now().Add(f.opts.Consistency)
			}
		case i >= 0:
			tg.Targets = append(tg.Targets[:i], tg.Targets[i+1:]...)
		}
	}
	return empty(), nil
}

func findTarget(ts []Target, t Target) int {
	for i, x := range ts {
		if x.ID == t.ID && x.Port == t.Port {
			return i
		}
	}
	return -1
}

// ---- listeners ----

func (f *Fake) describeListeners(form url.Values) (any, *apiError) {
	var out []xListener
	if lbARN := form.Get("LoadBalancerArn"); lbARN != "" {
		if f.lbs[lbARN] == nil {
			return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", lbARN)
		}
		for _, l := range f.listeners {
			if l.LoadBalancerARN == lbARN {
				out = append(out, xL(l))
			}
		}
	} else {
		for _, a := range stringList(form, "ListenerArns") {
			l := f.listeners[a]
			if l == nil {
				return nil, badRequest("ListenerNotFound", "One or more listeners not found")
			}
			out = append(out, xL(l))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	size, aerr := intParam(form, "PageSize", 0)
	if aerr != nil {
		return nil, aerr
	}
	pg, next, aerr := page(out, form.Get("Marker"), f.pageSize(size, 400))
	if aerr != nil {
		return nil, aerr
	}
	return &struct {
		XMLName    xml.Name    `xml:"result"`
		Listeners  []xListener `xml:"Listeners>member"`
		NextMarker string      `xml:",omitempty"`
	}{Listeners: pg, NextMarker: next}, nil
}

func (f *Fake) listenerFrom(form url.Values, l *Listener) *apiError {
	if v := form.Get("Protocol"); v != "" {
		l.Protocol = v
	}
	if _, ok := form["Port"]; ok {
		p, aerr := intParam(form, "Port", 0)
		if aerr != nil {
			return aerr
		}
		l.Port = p
	}
	if acts := members(form, "DefaultActions"); len(acts) > 0 {
		if len(acts) != 1 || form.Get(acts[0]+".Type") != "forward" {
			return badRequest("ValidationError", "network load balancer listeners take exactly one forward action")
		}
		l.TargetGroupARN = form.Get(acts[0] + ".TargetGroupArn")
	}
	if certs := members(form, "Certificates"); len(certs) > 0 {
		l.Certificate = form.Get(certs[0] + ".CertificateArn")
	}
	if v := form.Get("SslPolicy"); v != "" {
		l.SSLPolicy = v
	}
	if l.Protocol != "TLS" {
		l.Certificate, l.SSLPolicy = "", ""
	}
	switch {
	case !protocolsNLB[l.Protocol]:
		return badRequest("ValidationError", "listener protocol %q is not valid for a network load balancer", l.Protocol)
	case l.Port < 1 || l.Port > 65535:
		return badRequest("ValidationError", "listener port %d is not valid", l.Port)
	case l.Protocol == "TLS" && l.Certificate == "":
		return badRequest("CertificateNotFound", "A certificate must be specified for TLS listeners")
	case l.Protocol == "TLS" && !strings.HasPrefix(l.Certificate, "arn:aws:acm:") && !strings.HasPrefix(l.Certificate, "arn:aws:iam:"):
		return badRequest("CertificateNotFound", "Certificate '%s' not found", l.Certificate)
	}
	if l.Protocol == "TLS" && l.SSLPolicy == "" {
		l.SSLPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"
	}
	tg := f.groups[l.TargetGroupARN]
	if tg == nil {
		return badRequest("TargetGroupNotFound", "Target group '%s' not found", l.TargetGroupARN)
	}
	if !listenerToTGs[l.Protocol][tg.Protocol] {
		return badRequest("IncompatibleProtocols", "listener protocol '%s' is not compatible with target group protocol '%s'", l.Protocol, tg.Protocol)
	}
	for _, other := range f.groupLoadBalancers(tg.ARN) {
		if other != l.LoadBalancerARN {
			return badRequest("TargetGroupAssociationLimit", "The following target groups cannot be associated with more than one load balancer: %s", tg.ARN)
		}
	}
	// Attaching a group brings its targets into the load balancer's zones.
	if !contains(f.groupLoadBalancersOf(l.LoadBalancerARN), tg.ARN) {
		return f.checkZoneQuota([]string{l.LoadBalancerARN}, tg.ARN, nil)
	}
	return nil
}

func (f *Fake) createListener(form url.Values) (any, *apiError) {
	lb := f.lbs[form.Get("LoadBalancerArn")]
	if lb == nil {
		return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", form.Get("LoadBalancerArn"))
	}
	l := &Listener{LoadBalancerARN: lb.ARN, Tags: tagList(form, "Tags")}
	if aerr := checkELBTags(l.Tags); aerr != nil {
		return nil, aerr
	}
	if aerr := f.listenerFrom(form, l); aerr != nil {
		return nil, aerr
	}
	n := 0
	for _, o := range f.listeners {
		if o.LoadBalancerARN != lb.ARN {
			continue
		}
		n++
		if o.Port == l.Port {
			if o.Protocol == l.Protocol && o.TargetGroupARN == l.TargetGroupARN && o.Certificate == l.Certificate && sameTags(o.Tags, l.Tags) {
				return listenerResult(o), nil // idempotent
			}
			return nil, badRequest("DuplicateListener", "A listener already exists on this port for this load balancer '%s'", lb.ARN)
		}
	}
	if n >= 50 {
		return nil, badRequest("TooManyListeners", "You've reached the limit on the number of listeners per load balancer")
	}
	l.ARN = fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:listener/net/%s/%s/%s", f.opts.Region, f.opts.AccountID, lb.Name, lb.ARN[len(lb.ARN)-16:], randHex(16))
	f.listeners[l.ARN] = l
	return listenerResult(l), nil
}

func listenerResult(l *Listener) any {
	return &struct {
		XMLName   xml.Name    `xml:"result"`
		Listeners []xListener `xml:"Listeners>member"`
	}{Listeners: []xListener{xL(l)}}
}

func (f *Fake) modifyListener(form url.Values) (any, *apiError) {
	l := f.listeners[form.Get("ListenerArn")]
	if l == nil {
		return nil, badRequest("ListenerNotFound", "Listener '%s' not found", form.Get("ListenerArn"))
	}
	c := *l
	if aerr := f.listenerFrom(form, &c); aerr != nil {
		return nil, aerr
	}
	for _, o := range f.listeners {
		if o != l && o.LoadBalancerARN == l.LoadBalancerARN && o.Port == c.Port {
			return nil, badRequest("DuplicateListener", "A listener already exists on port %d", c.Port)
		}
	}
	*l = c
	return listenerResult(l), nil
}

func (f *Fake) deleteListener(form url.Values) (any, *apiError) {
	arn := form.Get("ListenerArn")
	if f.listeners[arn] == nil {
		return nil, badRequest("ListenerNotFound", "Listener '%s' not found", arn)
	}
	delete(f.listeners, arn)
	return empty(), nil
}

// seconds is n AWS seconds in fake time.
func (f *Fake) seconds(n int) time.Duration {
	if f.opts.Second < 0 {
		return 0
	}
	return time.Duration(n) * f.opts.Second
}

// groupLoadBalancersOf lists the target groups lbARN's listeners use.
func (f *Fake) groupLoadBalancersOf(lbARN string) []string {
	var out []string
	for _, l := range f.listeners {
		if l.LoadBalancerARN == lbARN && !contains(out, l.TargetGroupARN) {
			out = append(out, l.TargetGroupARN)
		}
	}
	return out
}

// elbTagRE is the ELBv2 tag key and value pattern
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_Tag.html).
var elbTagRE = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// checkELBTags applies the ELBv2 tag rules: keys of 1 to 128 characters,
// values of at most 256, both of letters, digits, spaces and _.:/=+-@; the
// aws: prefix is reserved; at most 50 tags per resource
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_Tag.html,
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-tags.html).
func checkELBTags(tags map[string]string) *apiError {
	if len(tags) > 50 {
		return badRequest("TooManyTags", "You've reached the limit on the number of tags for this resource (%d > 50)", len(tags))
	}
	for k, v := range tags {
		switch {
		case k == "" || len([]rune(k)) > 128 || !elbTagRE.MatchString(k):
			return badRequest("ValidationError", "Tag key '%s' is not valid: 1 to 128 letters, digits, spaces and _.:/=+-@", k)
		case len([]rune(v)) > 256 || !elbTagRE.MatchString(v):
			return badRequest("ValidationError", "Tag value '%s' is not valid: at most 256 letters, digits, spaces and _.:/=+-@", v)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return badRequest("ValidationError", "Tag keys starting with 'aws:' are reserved for AWS use")
		}
	}
	return nil
}

// checkTargetQuotas refuses a registration that would exceed the targets
// per target group or, for a group a load balancer uses, the targets per
// Availability Zone per load balancer; a target registered with N groups
// counts N times
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-limits.html).
func (f *Fake) checkTargetQuotas(tg *TargetGroup, add []Target) *apiError {
	var fresh []Target
	for _, t := range add {
		if findTarget(tg.Targets, t) < 0 {
			fresh = append(fresh, t)
		}
	}
	if len(tg.Targets)+len(fresh) > f.opts.TargetsPerGroup {
		return badRequest("TooManyTargets", "You've reached the limit on the number of targets per target group (%d)", f.opts.TargetsPerGroup)
	}
	return f.checkZoneQuota(f.groupLoadBalancers(tg.ARN), tg.ARN, fresh)
}

// checkZoneQuota counts, for each load balancer in lbARNs, its targets per
// zone with extra added to group tgARN.
func (f *Fake) checkZoneQuota(lbARNs []string, tgARN string, extra []Target) *apiError {
	for _, lbARN := range lbARNs {
		perZone := map[string]int{}
		groups := f.groupLoadBalancersOf(lbARN)
		if !contains(groups, tgARN) {
			groups = append(groups, tgARN)
		}
		for _, g := range groups {
			if tg := f.groups[g]; tg != nil {
				for _, t := range tg.Targets {
					perZone[f.targetZone(t)]++
				}
			}
		}
		for _, t := range extra {
			perZone[f.targetZone(t)]++
		}
		for z, n := range perZone {
			if n > f.opts.TargetsPerZone {
				return badRequest("TooManyTargets", "You've reached the limit on the number of targets per Availability Zone (%s: %d > %d) for load balancer '%s'", z, n, f.opts.TargetsPerZone, lbARN)
			}
		}
	}
	return nil
}

func (f *Fake) targetZone(t Target) string {
	if in := f.instances[t.ID]; in != nil {
		return in.Zone
	}
	return ""
}

// lbPrivateIP stands for the private addresses a load balancer's network
// interfaces send health checks from: inside every VPC the fake seeds
// (10.0.0.0/16).
var lbPrivateIP = netip.MustParseAddr("10.0.200.10")

// reachable reports whether t's health checks get through: for an instance
// with security groups, one of them must admit TCP on the health-check port
// from a security group of one of lbs or from a CIDR holding the load
// balancer's private address
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-register-targets.html#target-security-groups).
func (f *Fake) reachable(tg *TargetGroup, t Target, lbs []string) bool {
	in := f.instances[t.ID]
	if tg.TargetType != "instance" || in == nil || len(in.SecurityGroups) == 0 {
		return true
	}
	port := t.Port
	if tg.HealthCheck.Port != "traffic-port" {
		port, _ = strconv.Atoi(tg.HealthCheck.Port)
	}
	for _, id := range in.SecurityGroups {
		sg := f.sgs[id]
		if sg == nil {
			continue
		}
		for _, r := range sg.Ingress {
			if r.Protocol != "tcp" && r.Protocol != "-1" || port < r.FromPort || port > r.ToPort {
				continue
			}
			if r.SourceGroup != "" {
				for _, lbARN := range lbs {
					if lb := f.lbs[lbARN]; lb != nil && contains(lb.SecurityGroups, r.SourceGroup) {
						return true
					}
				}
				continue
			}
			if p, err := netip.ParsePrefix(r.CIDR); err == nil && p.Contains(lbPrivateIP) {
				return true
			}
		}
	}
	return false
}

// setSecurityGroups replaces a load balancer's security groups. A Network
// Load Balancer created without security groups cannot get any, and one
// created with them cannot lose them all
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_SetSecurityGroups.html,
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-security-groups.html).
func (f *Fake) setSecurityGroups(form url.Values) (any, *apiError) {
	lb := f.lbs[form.Get("LoadBalancerArn")]
	if lb == nil {
		return nil, badRequest("LoadBalancerNotFound", "Load balancer '%s' not found", form.Get("LoadBalancerArn"))
	}
	sgs := stringList(form, "SecurityGroups")
	switch {
	case len(lb.SecurityGroups) == 0:
		return nil, badRequest("InvalidConfigurationRequest", "You cannot set security groups on a Network Load Balancer which was created without any security groups.")
	case len(sgs) == 0:
		return nil, badRequest("InvalidConfigurationRequest", "A Network Load Balancer created with security groups must keep at least one.")
	case len(sgs) > 5:
		return nil, badRequest("InvalidConfigurationRequest", "A load balancer can have at most 5 security groups.")
	}
	for _, id := range sgs {
		if sg := f.sgs[id]; sg == nil || sg.VPCID != lb.VPCID {
			return nil, badRequest("InvalidSecurityGroup", "Security group '%s' does not exist in VPC '%s'", id, lb.VPCID)
		}
	}
	lb.SecurityGroups = append([]string(nil), sgs...)
	return &struct {
		XMLName          xml.Name `xml:"result"`
		SecurityGroupIds []string `xml:"SecurityGroupIds>member"`
	}{SecurityGroupIds: sgs}, nil
}
