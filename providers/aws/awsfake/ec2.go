package awsfake

import (
	"encoding/xml"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Subnet is a VPC subnet in the fake.
type Subnet struct {
	ID, VPCID, Zone string
	Tags            map[string]string
}

// SecurityGroup is a security group in the fake.
type SecurityGroup struct {
	ID, Name, VPCID, Description string
	Ingress                      []Rule
	Tags                         map[string]string
	Created                      time.Time
}

// Rule is one ingress permission: protocol ("tcp", "udp", "-1" for all),
// port range and one source, a CIDR (IPv4 or IPv6) or a security group.
type Rule struct {
	Protocol         string
	FromPort, ToPort int
	CIDR             string
	SourceGroup      string
}

func (f *Fake) ec2(action string, form url.Values) (any, *apiError) {
	switch action {
	case "DescribeSubnets":
		return f.describeSubnets(form)
	case "DescribeAddresses":
		return f.describeAddresses(form)
	case "DescribeSecurityGroups":
		return f.describeSecurityGroups(form)
	case "CreateSecurityGroup":
		return f.createSecurityGroup(form)
	case "DeleteSecurityGroup":
		return f.deleteSecurityGroup(form)
	case "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress":
		return f.changeIngress(action, form)
	case "DescribeInstances":
		return f.describeInstances(form)
	}
	return nil, badRequest("InvalidAction", "The action %s is not valid for this web service.", action)
}

type xItemTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xTags(tags map[string]string) []xItemTag {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []xItemTag
	for _, k := range keys {
		out = append(out, xItemTag{k, tags[k]})
	}
	return out
}

// filter is one EC2 Filter: Name with any of Values.
type filter struct {
	name   string
	values []string
}

func filters(form url.Values) []filter {
	var out []filter
	for _, m := range members(form, "Filter") {
		out = append(out, filter{name: form.Get(m + ".Name"), values: stringList(form, m+".Value")})
	}
	return out
}

// match applies EC2's filter semantics: every filter must match, a filter
// matches when any of its values does; tag:<key> matches a tag value and
// tag-key a tag key. attrs holds the other filterable attributes.
func match(fs []filter, tags map[string]string, attrs map[string]string) (bool, *apiError) {
	for _, flt := range fs {
		ok := false
		for _, v := range flt.values {
			switch {
			case strings.HasPrefix(flt.name, "tag:"):
				tv, has := tags[strings.TrimPrefix(flt.name, "tag:")]
				ok = ok || has && (v == "*" || tv == v)
			case flt.name == "tag-key":
				_, has := tags[v]
				ok = ok || has
			default:
				av, known := attrs[flt.name]
				if !known {
					return false, badRequest("InvalidParameterValue", "The filter '%s' is invalid", flt.name)
				}
				ok = ok || av == v
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func (f *Fake) describeSubnets(form url.Values) (any, *apiError) {
	type item struct {
		SubnetID         string     `xml:"subnetId"`
		VpcID            string     `xml:"vpcId"`
		AvailabilityZone string     `xml:"availabilityZone"`
		State            string     `xml:"state"`
		TagSet           []xItemTag `xml:"tagSet>item"`
	}
	ids := stringList(form, "SubnetId")
	fs := filters(form)
	var out []item
	var candidates []*Subnet
	if len(ids) > 0 {
		for _, id := range ids {
			sn := f.subnets[id]
			if sn == nil {
				return nil, badRequest("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
			}
			candidates = append(candidates, sn)
		}
	} else {
		for _, sn := range f.subnets {
			candidates = append(candidates, sn)
		}
	}
	for _, sn := range candidates {
		ok, aerr := match(fs, sn.Tags, map[string]string{"vpc-id": sn.VPCID, "availability-zone": sn.Zone, "subnet-id": sn.ID, "state": "available"})
		if aerr != nil {
			return nil, aerr
		}
		if ok {
			out = append(out, item{SubnetID: sn.ID, VpcID: sn.VPCID, AvailabilityZone: sn.Zone, State: "available", TagSet: xTags(sn.Tags)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SubnetID < out[j].SubnetID })
	size, aerr := intParam(form, "MaxResults", 0)
	if aerr != nil {
		return nil, aerr
	}
	pg, next, aerr := page(out, form.Get("NextToken"), f.pageSize(size, 1000))
	if aerr != nil {
		return nil, aerr
	}
	return &struct {
		XMLName   xml.Name `xml:"result"`
		SubnetSet []item   `xml:"subnetSet>item"`
		NextToken string   `xml:"nextToken,omitempty"`
	}{SubnetSet: pg, NextToken: next}, nil
}

// describeAddresses answers DescribeAddresses for AllocationId.N: an unknown
// allocation fails the whole call with InvalidAllocationID.NotFound
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeAddresses.html,
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
func (f *Fake) describeAddresses(form url.Values) (any, *apiError) {
	type item struct {
		AllocationID string     `xml:"allocationId"`
		PublicIP     string     `xml:"publicIp"`
		Domain       string     `xml:"domain"`
		TagSet       []xItemTag `xml:"tagSet>item"`
	}
	ids := stringList(form, "AllocationId")
	if len(ids) == 0 {
		for id := range f.eips {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	var out []item
	for _, id := range ids {
		ip, ok := f.eips[id]
		if !ok {
			return nil, badRequest("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", id)
		}
		out = append(out, item{AllocationID: id, PublicIP: ip, Domain: "vpc", TagSet: xTags(f.eipTags[id])})
	}
	return &struct {
		XMLName      xml.Name `xml:"result"`
		AddressesSet []item   `xml:"addressesSet>item"`
	}{AddressesSet: out}, nil
}

type xIPRange struct {
	CidrIP string `xml:"cidrIp"`
}

type xIPv6Range struct {
	CidrIPv6 string `xml:"cidrIpv6"`
}

type xPermission struct {
	IPProtocol string       `xml:"ipProtocol"`
	FromPort   *int         `xml:"fromPort,omitempty"`
	ToPort     *int         `xml:"toPort,omitempty"`
	IPRanges   []xIPRange   `xml:"ipRanges>item"`
	IPv6Ranges []xIPv6Range `xml:"ipv6Ranges>item"`
	Groups     []xGroupPair `xml:"groups>item"`
}

type xGroupPair struct {
	GroupID string `xml:"groupId"`
	UserID  string `xml:"userId"`
}

type xSecurityGroup struct {
	OwnerID             string        `xml:"ownerId"`
	GroupID             string        `xml:"groupId"`
	GroupName           string        `xml:"groupName"`
	GroupDescription    string        `xml:"groupDescription"`
	VpcID               string        `xml:"vpcId"`
	IPPermissions       []xPermission `xml:"ipPermissions>item"`
	IPPermissionsEgress []xPermission `xml:"ipPermissionsEgress>item"`
	TagSet              []xItemTag    `xml:"tagSet>item"`
}

func (f *Fake) xSG(sg *SecurityGroup) xSecurityGroup {
	x := xSecurityGroup{
		OwnerID: f.opts.AccountID, GroupID: sg.ID, GroupName: sg.Name, GroupDescription: sg.Description,
		VpcID: sg.VPCID, TagSet: xTags(sg.Tags),
		IPPermissionsEgress: []xPermission{{IPProtocol: "-1", IPRanges: []xIPRange{{CidrIP: "0.0.0.0/0"}}}},
	}
	// EC2 groups rules by protocol and port range, each with its ranges.
	type pk struct {
		proto    string
		from, to int
	}
	idx := map[pk]int{}
	for _, r := range sg.Ingress {
		k := pk{r.Protocol, r.FromPort, r.ToPort}
		i, ok := idx[k]
		if !ok {
			from, to := r.FromPort, r.ToPort
			x.IPPermissions = append(x.IPPermissions, xPermission{IPProtocol: r.Protocol, FromPort: &from, ToPort: &to})
			i = len(x.IPPermissions) - 1
			idx[k] = i
		}
		if r.SourceGroup != "" {
			x.IPPermissions[i].Groups = append(x.IPPermissions[i].Groups, xGroupPair{GroupID: r.SourceGroup, UserID: f.opts.AccountID})
		} else if strings.Contains(r.CIDR, ":") {
			x.IPPermissions[i].IPv6Ranges = append(x.IPPermissions[i].IPv6Ranges, xIPv6Range{r.CIDR})
		} else {
			x.IPPermissions[i].IPRanges = append(x.IPPermissions[i].IPRanges, xIPRange{r.CIDR})
		}
	}
	return x
}

func (f *Fake) describeSecurityGroups(form url.Values) (any, *apiError) {
	ids := stringList(form, "GroupId")
	names := stringList(form, "GroupName")
	fs := filters(form)
	var candidates []*SecurityGroup
	if len(ids) > 0 {
		for _, id := range ids {
			sg := f.sgs[id]
			if sg == nil || !f.visible(sg.Created) {
				return nil, badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
			}
			candidates = append(candidates, sg)
		}
	} else {
		for _, sg := range f.sgs {
			if f.visible(sg.Created) {
				candidates = append(candidates, sg)
			}
		}
	}
	var out []xSecurityGroup
	for _, sg := range candidates {
		if len(names) > 0 && !contains(names, sg.Name) {
			continue
		}
		ok, aerr := match(fs, sg.Tags, map[string]string{"group-name": sg.Name, "group-id": sg.ID, "vpc-id": sg.VPCID, "description": sg.Description})
		if aerr != nil {
			return nil, aerr
		}
		if ok {
			out = append(out, f.xSG(sg))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GroupID < out[j].GroupID })
	size, aerr := intParam(form, "MaxResults", 0)
	if aerr != nil {
		return nil, aerr
	}
	pg, next, aerr := page(out, form.Get("NextToken"), f.pageSize(size, 1000))
	if aerr != nil {
		return nil, aerr
	}
	return &struct {
		XMLName           xml.Name         `xml:"result"`
		SecurityGroupInfo []xSecurityGroup `xml:"securityGroupInfo>item"`
		NextToken         string           `xml:"nextToken,omitempty"`
	}{SecurityGroupInfo: pg, NextToken: next}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (f *Fake) createSecurityGroup(form url.Values) (any, *apiError) {
	name, vpc, desc := form.Get("GroupName"), form.Get("VpcId"), form.Get("GroupDescription")
	switch {
	case name == "" || len(name) > 255 || strings.HasPrefix(strings.ToLower(name), "sg-"):
		return nil, badRequest("InvalidParameterValue", "Invalid security group name '%s'", name)
	case desc == "" || len(desc) > 255:
		return nil, badRequest("InvalidParameterValue", "Invalid security group description")
	case vpc == "":
		return nil, badRequest("VPCIdNotSpecified", "No default VPC for this user")
	}
	for _, sg := range f.sgs {
		if sg.Name == name && sg.VPCID == vpc {
			return nil, badRequest("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpc)
		}
	}
	tags := map[string]string{}
	for _, m := range members(form, "TagSpecification") {
		if rt := form.Get(m + ".ResourceType"); rt != "security-group" {
			return nil, badRequest("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation", rt)
		}
		for k, v := range tagList(form, m+".Tag") {
			tags[k] = v
		}
	}
	if aerr := checkEC2Tags(tags); aerr != nil {
		return nil, aerr
	}
	sg := &SecurityGroup{ID: "sg-" + randHex(17), Name: name, VPCID: vpc, Description: desc, Tags: tags, Created: f.now()}
	f.sgs[sg.ID] = sg
	return &struct {
		XMLName xml.Name   `xml:"result"`
		GroupID string     `xml:"groupId"`
		TagSet  []xItemTag `xml:"tagSet>item"`
	}{GroupID: sg.ID, TagSet: xTags(tags)}, nil
}

func (f *Fake) deleteSecurityGroup(form url.Values) (any, *apiError) {
	id := form.Get("GroupId")
	sg := f.sgs[id]
	if sg == nil {
		return nil, badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	for _, lb := range f.lbs {
		if contains(lb.SecurityGroups, id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object", id)
		}
	}
	if until, ok := f.sgHeld[id]; ok && f.now().Before(until) {
		return nil, badRequest("DependencyViolation", "resource %s has a dependent object", id)
	}
	// A group another group's rule references cannot be deleted
	// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteSecurityGroup.html).
	for _, other := range f.sgs {
		for _, r := range other.Ingress {
			if r.SourceGroup == id && other.ID != id {
				return nil, badRequest("DependencyViolation", "resource %s has a dependent object", id)
			}
		}
	}
	delete(f.sgHeld, id)
	delete(f.sgs, id)
	return &struct {
		XMLName xml.Name `xml:"result"`
		Return  bool     `xml:"return"`
		GroupID string   `xml:"groupId"`
	}{Return: true, GroupID: id}, nil
}

func (f *Fake) changeIngress(action string, form url.Values) (any, *apiError) {
	sg := f.sgs[form.Get("GroupId")]
	if sg == nil {
		return nil, badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist", form.Get("GroupId"))
	}
	var rules []Rule
	for _, m := range members(form, "IpPermissions") {
		proto := form.Get(m + ".IpProtocol")
		if proto != "tcp" && proto != "udp" {
			return nil, badRequest("InvalidParameterValue", "the fake supports tcp and udp rules, got %q", proto)
		}
		for _, g := range members(form, m+".Groups") {
			src := form.Get(g + ".GroupId")
			other := f.sgs[src]
			if other == nil {
				return nil, badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist", src)
			}
			if other.VPCID != sg.VPCID {
				return nil, badRequest("InvalidGroup.NotFound", "You have specified two resources that belong to different networks.")
			}
		}
		from, err1 := strconv.Atoi(form.Get(m + ".FromPort"))
		to, err2 := strconv.Atoi(form.Get(m + ".ToPort"))
		if err1 != nil || err2 != nil || from < 0 || to > 65535 || from > to {
			return nil, badRequest("InvalidParameterValue", "invalid port range")
		}
		for _, r := range members(form, m+".IpRanges") {
			rules = append(rules, Rule{proto, from, to, form.Get(r + ".CidrIp"), ""})
		}
		for _, r := range members(form, m+".Ipv6Ranges") {
			rules = append(rules, Rule{proto, from, to, form.Get(r + ".CidrIpv6"), ""})
		}
		for _, g := range members(form, m+".Groups") {
			rules = append(rules, Rule{Protocol: proto, FromPort: from, ToPort: to, SourceGroup: form.Get(g + ".GroupId")})
		}
	}
	if len(rules) == 0 {
		return nil, badRequest("MissingParameter", "at least one permission must be given")
	}
	for _, r := range rules {
		p, err := netip.ParsePrefix(r.CIDR)
		if r.SourceGroup == "" && (err != nil || p.Masked() != p) {
			return nil, badRequest("InvalidParameterValue", "CIDR block %s is malformed", r.CIDR)
		}
		i := indexRule(sg.Ingress, r)
		switch {
		case action == "AuthorizeSecurityGroupIngress" && i >= 0:
			return nil, badRequest("InvalidPermission.Duplicate", "the specified rule \"peer: %s, %s, from port: %d, to port: %d, ALLOW\" already exists", r.CIDR, strings.ToUpper(r.Protocol), r.FromPort, r.ToPort)
		case action == "RevokeSecurityGroupIngress" && i < 0:
			return nil, badRequest("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
		}
	}
	// Each CIDR and each referenced group is one rule; a group holds at most
	// 60 inbound rules by default
	// (https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html#vpc-limits-security-groups).
	if action == "AuthorizeSecurityGroupIngress" && len(sg.Ingress)+len(rules) > f.opts.RulesPerSecurityGroup {
		return nil, badRequest("RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached.")
	}
	for _, r := range rules {
		if action == "AuthorizeSecurityGroupIngress" {
			sg.Ingress = append(sg.Ingress, r)
		} else {
			i := indexRule(sg.Ingress, r)
			sg.Ingress = append(sg.Ingress[:i], sg.Ingress[i+1:]...)
		}
	}
	return &struct {
		XMLName xml.Name `xml:"result"`
		Return  bool     `xml:"return"`
	}{Return: true}, nil
}

func indexRule(rules []Rule, r Rule) int {
	for i, x := range rules {
		if x == r {
			return i
		}
	}
	return -1
}

// checkEC2Tags applies the EC2 tag rules: keys of 1 to 128 characters,
// values of at most 256, the aws: prefix reserved, at most 50 tags per
// resource
// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions).
func checkEC2Tags(tags map[string]string) *apiError {
	if len(tags) > 50 {
		return badRequest("TagLimitExceeded", "The maximum number of tags for a resource has been reached (%d > 50)", len(tags))
	}
	for k, v := range tags {
		switch {
		case k == "" || len([]rune(k)) > 128:
			return badRequest("InvalidParameterValue", "Tag key '%s' must be 1 to 128 characters", k)
		case len([]rune(v)) > 256:
			return badRequest("InvalidParameterValue", "Tag value for key '%s' exceeds 256 characters", k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return badRequest("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		}
	}
	return nil
}

// describeInstances answers DescribeInstances for InstanceId.N (an unknown
// ID fails the call with InvalidInstanceID.NotFound) or an instance-id
// filter (unknown IDs are left out)
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html).
func (f *Fake) describeInstances(form url.Values) (any, *apiError) {
	type group struct {
		GroupID   string `xml:"groupId"`
		GroupName string `xml:"groupName"`
	}
	type instance struct {
		InstanceID string `xml:"instanceId"`
		Placement  struct {
			AvailabilityZone string `xml:"availabilityZone"`
		} `xml:"placement"`
		GroupSet []group `xml:"groupSet>item"`
		State    struct {
			Name string `xml:"name"`
		} `xml:"instanceState"`
	}
	type reservation struct {
		ReservationID string     `xml:"reservationId"`
		OwnerID       string     `xml:"ownerId"`
		Instances     []instance `xml:"instancesSet>item"`
	}
	ids := stringList(form, "InstanceId")
	for _, id := range ids {
		if f.instances[id] == nil {
			return nil, badRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	fs := filters(form)
	var all []string
	for id := range f.instances {
		if len(ids) == 0 || contains(ids, id) {
			all = append(all, id)
		}
	}
	sort.Strings(all)
	var out []reservation
	for _, id := range all {
		in := f.instances[id]
		ok, aerr := match(fs, nil, map[string]string{"instance-id": id, "availability-zone": in.Zone})
		if aerr != nil {
			return nil, aerr
		}
		if !ok {
			continue
		}
		x := instance{InstanceID: id}
		x.Placement.AvailabilityZone = in.Zone
		x.State.Name = "running"
		for _, g := range in.SecurityGroups {
			name := ""
			if sg := f.sgs[g]; sg != nil {
				name = sg.Name
			}
			x.GroupSet = append(x.GroupSet, group{GroupID: g, GroupName: name})
		}
		out = append(out, reservation{ReservationID: "r-" + id[2:], OwnerID: f.opts.AccountID, Instances: []instance{x}})
	}
	return &struct {
		XMLName        xml.Name      `xml:"result"`
		ReservationSet []reservation `xml:"reservationSet>item"`
	}{ReservationSet: out}, nil
}
