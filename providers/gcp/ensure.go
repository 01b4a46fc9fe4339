package gcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/go-logr/logr"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/portico-lb/portico/providers"
)

// Resource kinds reported in Status.Resources.
const (
	kindAddress         = "address"
	kindForwardingRule  = "forwardingRule"
	kindBackendService  = "backendService"
	kindHealthCheck     = "healthCheck"
	kindFirewall        = "firewall"
	kindInstanceGroup   = "instanceGroup"
	descPortsKey        = "portico.dev/ports"
	healthCheckPath     = "/healthz"
	balancingConnection = "CONNECTION"
	purposeSharedVIP    = "SHARED_LOADBALANCER_VIP"
)

var allProtocols = []providers.Protocol{providers.TCP, providers.UDP}

// Ensure implements providers.Provider. It first reads every resource under
// the Service's names (refusing, before any change, to touch one without its
// ownership marks), then builds in dependency order the address, the health
// check, the cluster's instance groups, the backend service, the forwarding
// rules and the firewall rules, changing only what differs: a second call
// with the same input makes no mutating call, and a call after a crash adopts
// what the interrupted one made.
func (p *Provider) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	pl, err := p.newPlan(d)
	if err != nil {
		return nil, err
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("loadBalancer", BaseName(pl.key))

	have, err := p.readOwned(ctx, pl.key)
	if err != nil {
		return nil, err
	}
	rules := have.rules
	ip, ownAddr, err := p.ensureAddress(ctx, log, pl, have.address, rules)
	if err != nil {
		return nil, err
	}
	hc, err := p.ensureHealthCheck(ctx, log, pl, have.healthCheck)
	if err != nil {
		return nil, err
	}
	groups, total, err := p.ensureInstanceGroups(ctx, log, pl)
	if err != nil {
		return nil, err
	}
	bs, err := p.ensureBackendService(ctx, log, pl, hc, groups, have.backendService, rules)
	if err != nil {
		return nil, err
	}
	if ip, err = p.ensureRules(ctx, log, pl, ip, bs, rules); err != nil {
		return nil, err
	}
	if err := p.ensureFirewalls(ctx, log, pl, ip, have.firewalls); err != nil {
		return nil, err
	}
	healthy, err := p.healthy(ctx, pl.key, slices.Sorted(maps.Values(groups)))
	if err != nil {
		return nil, err
	}
	if ownAddr != nil && (pl.addressName != "") {
		// The Service moved to a user-reserved address: release ours now
		// that no rule uses it.
		if err := p.deleteAddress(ctx, log, pl.key); err != nil {
			return nil, err
		}
		ownAddr = nil
	}
	return p.status(pl, ip, ownAddr != nil, total, healthy), nil
}

// existing holds a Service's resources as read before acting.
type existing struct {
	address        *computepb.Address
	healthCheck    *computepb.HealthCheck
	backendService *computepb.BackendService
	rules          map[providers.Protocol]*computepb.ForwardingRule
	firewalls      map[string]*computepb.Firewall
}

// readOwned reads every per-Service resource under key's names and fails
// with a *providers.NotOwnedError, before anything is created or changed,
// when one of them lacks key's ownership marks.
func (p *Provider) readOwned(ctx context.Context, key providers.Key) (*existing, error) {
	base := BaseName(key)
	ex := &existing{rules: map[providers.Protocol]*computepb.ForwardingRule{}, firewalls: map[string]*computepb.Firewall{}}
	notOwned := func(kind, id, desc string) error {
		if ownedBy(desc, key) {
			return nil
		}
		return &providers.NotOwnedError{Kind: kind, ID: id}
	}
	var err error
	if ex.address, err = p.getAddress(ctx, base); err != nil {
		return nil, err
	}
	if ex.address != nil {
		if err := notOwned(kindAddress, p.regional("addresses", base), ex.address.GetDescription()); err != nil {
			return nil, err
		}
	}
	for _, protocol := range allProtocols {
		r, err := p.getRule(ctx, key, protocol)
		if err != nil {
			return nil, err
		}
		if r == nil {
			continue
		}
		if err := notOwned(kindForwardingRule, p.regional("forwardingRules", r.GetName()), r.GetDescription()); err != nil {
			return nil, err
		}
		ex.rules[protocol] = r
	}
	hc, found, err := get(ctx, p, "reading health check "+base, func(ctx context.Context) (*computepb.HealthCheck, error) {
		return p.api.HealthChecks.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: p.opts.Project, Region: p.opts.Region, HealthCheck: base})
	})
	if err != nil {
		return nil, err
	}
	if found {
		if err := notOwned(kindHealthCheck, p.regional("healthChecks", base), hc.GetDescription()); err != nil {
			return nil, err
		}
		ex.healthCheck = hc
	}
	bs, found, err := get(ctx, p, "reading backend service "+base, func(ctx context.Context) (*computepb.BackendService, error) {
		return p.api.BackendServices.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region, BackendService: base})
	})
	if err != nil {
		return nil, err
	}
	if found {
		if err := notOwned(kindBackendService, p.regional("backendServices", base), bs.GetDescription()); err != nil {
			return nil, err
		}
		ex.backendService = bs
	}
	for _, name := range firewallNames(key) {
		fw, found, err := get(ctx, p, "reading firewall "+name, func(ctx context.Context) (*computepb.Firewall, error) {
			return p.api.Firewalls.Get(ctx, &computepb.GetFirewallRequest{Project: p.networkProject(), Firewall: name})
		})
		if err != nil {
			return nil, err
		}
		if found {
			id := "projects/" + p.networkProject() + "/global/firewalls/" + name
			if err := notOwned(kindFirewall, id, fw.GetDescription()); err != nil {
				return nil, err
			}
			if !p.firewallInRegion(fw) {
				// The same cluster ID in another region: firewall rules are
				// global, the rest of that load balancer is not ours.
				return nil, &providers.NotOwnedError{Kind: kindFirewall, ID: id}
			}
			ex.firewalls[name] = fw
		}
	}
	return ex, nil
}

// healthy counts the instances the backend service's health check finds
// healthy in groups.
func (p *Provider) healthy(ctx context.Context, key providers.Key, groups []string) (int, error) {
	n := 0
	for _, g := range groups {
		h, _, err := get(ctx, p, "reading backend health of "+g, func(ctx context.Context) (*computepb.BackendServiceGroupHealth, error) {
			return p.api.BackendServices.GetHealth(ctx, &computepb.GetHealthRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region,
				BackendService: BaseName(key), ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: proto.String(g)}})
		})
		if err != nil {
			return 0, err
		}
		for _, st := range h.GetHealthStatus() {
			if st.GetHealthState() == "HEALTHY" {
				n++
			}
		}
	}
	return n, nil
}

func (p *Provider) status(pl *plan, ip string, ownAddr bool, total, healthy int) *providers.Status {
	base := BaseName(pl.key)
	st := &providers.Status{
		Backends: providers.Backends{Total: total, Healthy: healthy},
		Cost: providers.CostInputs{
			Kind: "gcp-forwarding-rule", Region: p.opts.Region, Tier: pl.tier,
			Units: map[string]int{"forwardingRules": len(pl.protocols), "backendServices": 1, "healthChecks": 1},
		},
	}
	if ip != "" {
		st.Ingress = []providers.Ingress{{IP: parseAddr(ip), IPMode: providers.IPModeVIP}}
	}
	if ownAddr {
		st.Cost.Units["addresses"] = 1
		st.Resources = append(st.Resources, providers.Resource{Kind: kindAddress, ID: p.regional("addresses", base)})
	}
	var rules []string
	for _, proto := range pl.protocols {
		rules = append(rules, ForwardingRuleName(pl.key, proto))
		st.Resources = append(st.Resources, providers.Resource{Kind: kindForwardingRule, ID: p.regional("forwardingRules", ForwardingRuleName(pl.key, proto))})
		for _, port := range pl.ports[proto] {
			st.Ports = append(st.Ports, providers.PortStatus{Port: port, Protocol: proto})
		}
	}
	// The usage meter's id: every forwarding rule of the load balancer
	// (usage/meters.ParseRuleMeterID). The meter reads the external
	// passthrough metrics; internal load balancers are not metered.
	if !pl.internal {
		st.Cost.MeterID = p.regional("forwardingRules", strings.Join(rules, ","))
	}
	st.Resources = append(st.Resources,
		providers.Resource{Kind: kindBackendService, ID: p.regional("backendServices", base)},
		providers.Resource{Kind: kindHealthCheck, ID: p.regional("healthChecks", base)},
		providers.Resource{Kind: kindFirewall, ID: "projects/" + p.networkProject() + "/global/firewalls/" + base},
		providers.Resource{Kind: kindFirewall, ID: "projects/" + p.networkProject() + "/global/firewalls/" + HealthCheckFirewallName(pl.key)},
	)
	return st
}

// networkProject is the project that owns the VPC network and therefore
// its firewall rules: --gcp-network-project in a Shared VPC (the host
// project, https://cloud.google.com/vpc/docs/shared-vpc#firewall_rules),
// else --gcp-project.
func (p *Provider) networkProject() string {
	if p.opts.NetworkProject != "" {
		return p.opts.NetworkProject
	}
	return p.opts.Project
}

func (p *Provider) regional(coll, name string) string {
	return "projects/" + p.opts.Project + "/regions/" + p.opts.Region + "/" + coll + "/" + name
}

// get runs a read, turning 404 into (zero, false, nil).
func get[T any](ctx context.Context, p *Provider, what string, fn func(context.Context) (T, error)) (T, bool, error) {
	var out T
	err := p.call(ctx, what, func(ctx context.Context) error {
		var e error
		out, e = fn(ctx)
		return e
	})
	if classify(err) == kindNotFound {
		var zero T
		return zero, false, nil
	}
	return out, err == nil, err
}

// do runs a mutating call and waits for its Operation. Throttled calls and
// polls are retried; so is the whole call when its Operation fails in a way a
// new attempt may not (INTERNAL_ERROR, RESOURCE_NOT_READY,
// RESOURCE_IN_USE_BY_ANOTHER_RESOURCE: a failed operation changes nothing,
// https://cloud.google.com/compute/docs/api/how-tos/api-errors). What is left
// is classified by wrap: quota, configuration, retryable.
func (p *Provider) do(ctx context.Context, what string, fn func(context.Context) (*compute.Operation, error)) error {
	var err error
	for attempt := range p.opts.Backoff.Attempts {
		var op *compute.Operation
		if err := p.call(ctx, what, func(ctx context.Context) error {
			var e error
			op, e = fn(ctx)
			return e
		}); err != nil {
			return err
		}
		err = p.call(ctx, what+" (waiting for operation)", func(ctx context.Context) error {
			werr := op.Wait(ctx)
			if oe := operationError(op.Proto()); oe != nil {
				return oe
			}
			return werr
		})
		if classify(err) != kindOpRetry || attempt == p.opts.Backoff.Attempts-1 {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(p.opts.Backoff.delay(attempt)):
		}
	}
	return err
}

// created tolerates 409: an earlier attempt (retried, or cut short by a
// crash) already created the resource, which the caller re-reads.
func created(err error) error {
	if classify(err) == kindExists {
		return nil
	}
	return err
}

// deleted tolerates 404.
func deleted(err error) error {
	if classify(err) == kindNotFound {
		return nil
	}
	return err
}

func (p *Provider) getRule(ctx context.Context, key providers.Key, proto providers.Protocol) (*computepb.ForwardingRule, error) {
	name := ForwardingRuleName(key, proto)
	r, found, err := get(ctx, p, "reading forwarding rule "+name, func(ctx context.Context) (*computepb.ForwardingRule, error) {
		return p.api.ForwardingRules.Get(ctx, &computepb.GetForwardingRuleRequest{Project: p.opts.Project, Region: p.opts.Region, ForwardingRule: name})
	})
	if err != nil || !found {
		return nil, err
	}
	return r, nil
}

// ensureAddress returns the load balancer's IP ("" while an ephemeral one is
// not assigned yet) and Portico's own address, if one exists.
func (p *Provider) ensureAddress(ctx context.Context, log logr.Logger, pl *plan, own *computepb.Address, rules map[providers.Protocol]*computepb.ForwardingRule) (string, *computepb.Address, error) {
	base := BaseName(pl.key)
	if err := p.resolveRequestedIP(ctx, pl, own, rules); err != nil {
		return "", nil, err
	}
	if pl.addressName != "" {
		user, err := p.getAddress(ctx, pl.addressName)
		if err != nil {
			return "", nil, err
		}
		if user == nil {
			return "", nil, providers.Configf("AddressNotFound", "%s: no address %q is reserved in region %s", AnnotationAddressName, pl.addressName, p.opts.Region)
		}
		if (user.GetAddressType() == "INTERNAL") != pl.internal {
			return "", nil, providers.Configf("AddressTypeMismatch", "address %q is %s but the load balancer is %s", pl.addressName, user.GetAddressType(), map[bool]string{true: "internal", false: "external"}[pl.internal])
		}
		if pl.internal && len(pl.protocols) > 1 && user.GetPurpose() != purposeSharedVIP {
			return "", nil, providers.Configf("AddressNotShared", "address %q serves TCP and UDP through two internal forwarding rules, which needs purpose %s (it has %q); reserve one with --purpose=%s",
				pl.addressName, purposeSharedVIP, user.GetPurpose(), purposeSharedVIP)
		}
		return user.GetAddress(), own, nil
	}
	if own != nil && !addressMatches(own, pl) {
		// The scheme, tier or subnet changed: the address cannot follow, so
		// rules and address are rebuilt (the IP changes).
		log.Info("Replacing address after a scheme, tier or subnet change", "address", base)
		for _, proto := range allProtocols {
			if rules[proto] != nil {
				if err := p.deleteRule(ctx, log, pl.key, proto); err != nil {
					return "", nil, err
				}
				delete(rules, proto)
			}
		}
		if err := p.deleteAddress(ctx, log, pl.key); err != nil {
			return "", nil, err
		}
		own = nil
	}
	if own != nil {
		// An address Portico reserved stays the load balancer's until the
		// Service is deleted, also after a switch to ephemeral: demoting it
		// would change the IP.
		pl.ephemeral = false
		return own.GetAddress(), own, p.setAddressLabels(ctx, log, pl.key, own)
	}
	if pl.ephemeral {
		for _, proto := range allProtocols {
			if r := rules[proto]; r != nil && ownedBy(r.GetDescription(), pl.key) {
				return r.GetIPAddress(), nil, nil
			}
		}
		return "", nil, nil
	}
	// Labels sent at insert are ignored by the API; setAddressLabels adds
	// them once the address exists.
	want := &computepb.Address{
		Name:        proto.String(base),
		Description: proto.String(description(pl.key, nil)),
	}
	switch {
	case pl.internal:
		want.AddressType = proto.String("INTERNAL")
		want.Subnetwork = proto.String(pl.subnet)
		// Two internal forwarding rules (TCP and UDP) share one address only
		// when its purpose is SHARED_LOADBALANCER_VIP
		// (https://cloud.google.com/load-balancing/docs/internal/multiple-forwarding-rules-same-ip).
		// Every internal address gets it, so adding a protocol later keeps
		// the IP.
		want.Purpose = proto.String(purposeSharedVIP)
	default:
		want.AddressType = proto.String("EXTERNAL")
		want.NetworkTier = proto.String(pl.tier)
	}
	if pl.requestedIP != "" {
		want.Address = proto.String(pl.requestedIP)
	} else {
		// Promote the ephemeral address a rule of ours already uses, so
		// switching to a reserved address keeps the IP.
		for _, proto := range allProtocols {
			if r := rules[proto]; r != nil && ownedBy(r.GetDescription(), pl.key) && r.GetIPAddress() != "" {
				want.Address = r.IPAddress
				break
			}
		}
	}
	log.Info("Reserving address", "address", base, "ip", want.GetAddress())
	err := created(p.do(ctx, "reserving address "+base, func(ctx context.Context) (*compute.Operation, error) {
		return p.api.Addresses.Insert(ctx, &computepb.InsertAddressRequest{Project: p.opts.Project, Region: p.opts.Region, AddressResource: want})
	}))
	if err != nil {
		return "", nil, err
	}
	own, err = p.getAddress(ctx, base)
	if err != nil {
		return "", nil, err
	}
	if own == nil || !ownedBy(own.GetDescription(), pl.key) {
		return "", nil, providers.Retry(fmt.Errorf("address %s not readable after creation", base), p.opts.RetryAfter/5)
	}
	return own.GetAddress(), own, p.setAddressLabels(ctx, log, pl.key, own)
}

// setAddressLabels gives Portico's address its labels, which addresses take
// only through setLabels with the current labelFingerprint
// (https://cloud.google.com/compute/docs/reference/rest/v1/addresses/setLabels).
func (p *Provider) setAddressLabels(ctx context.Context, log logr.Logger, key providers.Key, a *computepb.Address) error {
	want := labels(key)
	if maps.Equal(a.GetLabels(), want) {
		return nil
	}
	log.Info("Labelling address", "address", a.GetName())
	return p.do(ctx, "labelling address "+a.GetName(), func(ctx context.Context) (*compute.Operation, error) {
		return p.api.Addresses.SetLabels(ctx, &computepb.SetLabelsAddressRequest{Project: p.opts.Project, Region: p.opts.Region, Resource: a.GetName(),
			RegionSetLabelsRequestResource: &computepb.RegionSetLabelsRequest{Labels: want, LabelFingerprint: a.LabelFingerprint}})
	})
}

// resolveRequestedIP handles lb.portico.dev/ip on an external load balancer.
// Compute Engine picks external IPs: one is reserved by number only to
// promote the ephemeral IP a resource already uses
// (https://cloud.google.com/vpc/docs/reserve-static-external-ip-address#promote_ephemeral_ip).
// So the IP must be Portico's own address, the ephemeral IP of one of the
// Service's rules (promoted), or an address already reserved in the region
// by the user, which is then used as gcp.lb.portico.dev/address-name is:
// never changed or released. Anything else is a ConfigError.
func (p *Provider) resolveRequestedIP(ctx context.Context, pl *plan, own *computepb.Address, rules map[providers.Protocol]*computepb.ForwardingRule) error {
	if pl.requestedIP == "" || pl.internal || pl.addressName != "" {
		return nil
	}
	if own != nil && own.GetAddress() == pl.requestedIP {
		return nil
	}
	for _, r := range rules {
		if r.GetIPAddress() == pl.requestedIP && ownedBy(r.GetDescription(), pl.key) {
			return nil // promotion
		}
	}
	var found *computepb.Address
	err := p.call(ctx, "looking up the address of "+pl.requestedIP, func(ctx context.Context) error {
		found = nil
		it := p.api.Addresses.List(ctx, &computepb.ListAddressesRequest{Project: p.opts.Project, Region: p.opts.Region,
			Filter: proto.String(fmt.Sprintf("address = %q", pl.requestedIP))})
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			if a.GetAddress() == pl.requestedIP {
				found = a
			}
		}
	})
	switch {
	case err != nil:
		return err
	case found == nil:
		return providers.Configf("AddressNotReserved", "lb.portico.dev/ip %s: Compute Engine chooses external IPs itself and reserves one by number only to promote an ephemeral IP in use; "+
			"reserve an address in region %s (gcloud compute addresses create NAME --region %s) and give its IP here or its name in %s",
			pl.requestedIP, p.opts.Region, p.opts.Region, AnnotationAddressName)
	case Marks(found.GetDescription())[providers.TagManagedBy] == providers.ManagedByValue && !ownedBy(found.GetDescription(), pl.key):
		return providers.Configf(providers.ReasonResourceNotAllowed, "lb.portico.dev/ip %s belongs to address %s, which Portico reserved for another Service", pl.requestedIP, found.GetName())
	case found.GetName() == BaseName(pl.key):
		return nil
	}
	pl.addressName = found.GetName()
	return nil
}

func addressMatches(a *computepb.Address, pl *plan) bool {
	if pl.internal {
		return a.GetAddressType() == "INTERNAL" && relLink(a.GetSubnetwork()) == relLink(pl.subnet) &&
			(len(pl.protocols) < 2 || a.GetPurpose() == purposeSharedVIP)
	}
	return a.GetAddressType() != "INTERNAL" && a.GetNetworkTier() == pl.tier &&
		(pl.requestedIP == "" || a.GetAddress() == pl.requestedIP)
}

func (p *Provider) getAddress(ctx context.Context, name string) (*computepb.Address, error) {
	a, found, err := get(ctx, p, "reading address "+name, func(ctx context.Context) (*computepb.Address, error) {
		return p.api.Addresses.Get(ctx, &computepb.GetAddressRequest{Project: p.opts.Project, Region: p.opts.Region, Address: name})
	})
	if err != nil || !found {
		return nil, err
	}
	return a, nil
}

func (p *Provider) ensureHealthCheck(ctx context.Context, log logr.Logger, pl *plan, have *computepb.HealthCheck) (string, error) {
	name := BaseName(pl.key)
	link := p.regional("healthChecks", name)
	want := &computepb.HealthCheck{
		Name:               proto.String(name),
		Description:        proto.String(description(pl.key, nil)),
		Type:               proto.String("HTTP"),
		HttpHealthCheck:    &computepb.HTTPHealthCheck{Port: proto.Int32(pl.hcPort), RequestPath: proto.String(healthCheckPath)},
		CheckIntervalSec:   proto.Int32(8),
		TimeoutSec:         proto.Int32(1),
		HealthyThreshold:   proto.Int32(1),
		UnhealthyThreshold: proto.Int32(3),
	}
	var err error
	switch {
	case have == nil:
		log.Info("Creating health check", "healthCheck", name, "port", pl.hcPort)
		err = created(p.do(ctx, "creating health check "+name, func(ctx context.Context) (*compute.Operation, error) {
			return p.api.HealthChecks.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: p.opts.Project, Region: p.opts.Region, HealthCheckResource: want})
		}))
	case have.GetType() != want.GetType() || have.GetHttpHealthCheck().GetPort() != pl.hcPort ||
		have.GetHttpHealthCheck().GetRequestPath() != healthCheckPath || have.GetCheckIntervalSec() != want.GetCheckIntervalSec() ||
		have.GetTimeoutSec() != want.GetTimeoutSec() || have.GetHealthyThreshold() != want.GetHealthyThreshold() ||
		have.GetUnhealthyThreshold() != want.GetUnhealthyThreshold():
		log.Info("Updating health check", "healthCheck", name, "port", pl.hcPort)
		err = p.do(ctx, "updating health check "+name, func(ctx context.Context) (*compute.Operation, error) {
			return p.api.HealthChecks.Update(ctx, &computepb.UpdateRegionHealthCheckRequest{Project: p.opts.Project, Region: p.opts.Region, HealthCheck: name, HealthCheckResource: want})
		})
	}
	return link, err
}

// ensureInstanceGroups makes the cluster's instance group in every zone of
// the plan hold the plan's nodes that no reused external group (GKE's
// k8s-ig--, see externalGroups) already holds, and returns the links of every
// group the backend service must use (keyed by link) and the number of
// backend instances.
func (p *Provider) ensureInstanceGroups(ctx context.Context, log logr.Logger, pl *plan) (map[string]string, int, error) {
	name := InstanceGroupName(pl.key.ClusterID)
	links := map[string]string{}
	total := 0
	zones := make([]string, 0, len(pl.zones))
	for z := range pl.zones {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, zone := range zones {
		link := "projects/" + p.opts.Project + "/zones/" + zone + "/instanceGroups/" + name
		external, covered, err := p.externalGroups(ctx, log, pl, zone)
		if err != nil {
			return nil, 0, err
		}
		for _, l := range external {
			links[l] = l
		}
		var own []string
		for _, inst := range pl.zones[zone] {
			if !covered[inst] {
				own = append(own, inst)
			}
		}
		total += len(pl.zones[zone])
		ig, err := p.getInstanceGroup(ctx, zone, name)
		if err != nil {
			return nil, 0, err
		}
		if ig != nil && !ownedByCluster(ig.GetDescription(), pl.key.ClusterID) {
			return nil, 0, &providers.NotOwnedError{Kind: kindInstanceGroup, ID: link}
		}
		if ig == nil && len(own) == 0 {
			continue // external groups serve every node of this zone
		}
		if ig == nil {
			log.Info("Creating instance group", "instanceGroup", name, "zone", zone)
			err = created(p.do(ctx, "creating instance group "+link, func(ctx context.Context) (*compute.Operation, error) {
				return p.api.InstanceGroups.Insert(ctx, &computepb.InsertInstanceGroupRequest{Project: p.opts.Project, Zone: zone, InstanceGroupResource: &computepb.InstanceGroup{
					Name:        proto.String(name),
					Description: proto.String(clusterDescription(pl.key.ClusterID)),
					Network:     proto.String(p.opts.Network),
				}})
			}))
			if err != nil {
				return nil, 0, err
			}
		}
		have, err := p.members(ctx, zone, name)
		if err != nil {
			return nil, 0, err
		}
		var add, remove []*computepb.InstanceReference
		for _, inst := range own {
			if !have[inst] {
				add = append(add, &computepb.InstanceReference{Instance: proto.String(inst)})
			}
		}
		for _, inst := range sortedKeys(have) {
			// An instance may be in one load-balanced group only: those an
			// external group holds leave ours, whatever the traffic policy.
			if covered[inst] || pl.exactMembers && !slices.Contains(own, inst) {
				remove = append(remove, &computepb.InstanceReference{Instance: proto.String(inst)})
			}
		}
		// Add before removing, so a node swap never empties the group.
		if len(add) > 0 {
			log.Info("Adding instances to instance group", "instanceGroup", name, "zone", zone, "count", len(add))
			if err := p.do(ctx, "adding instances to "+link, func(ctx context.Context) (*compute.Operation, error) {
				return p.api.InstanceGroups.AddInstances(ctx, &computepb.AddInstancesInstanceGroupRequest{Project: p.opts.Project, Zone: zone, InstanceGroup: name,
					InstanceGroupsAddInstancesRequestResource: &computepb.InstanceGroupsAddInstancesRequest{Instances: add}})
			}); err != nil {
				return nil, 0, err
			}
		}
		if len(remove) > 0 {
			log.Info("Removing instances from instance group", "instanceGroup", name, "zone", zone, "count", len(remove))
			if err := p.do(ctx, "removing instances from "+link, func(ctx context.Context) (*compute.Operation, error) {
				return p.api.InstanceGroups.RemoveInstances(ctx, &computepb.RemoveInstancesInstanceGroupRequest{Project: p.opts.Project, Zone: zone, InstanceGroup: name,
					InstanceGroupsRemoveInstancesRequestResource: &computepb.InstanceGroupsRemoveInstancesRequest{Instances: remove}})
			}); err != nil {
				return nil, 0, err
			}
		}
		links[link] = link
	}
	return links, total, nil
}

// externalGroups finds, in zone, instance groups named with
// --gcp-external-instance-groups-prefix (GKE's k8s-ig--<cluster-uid>, which
// GKE's instance-group load balancers and Ingress keep holding every node)
// that hold the plan's nodes. An instance may be in only one load-balanced
// instance group, so Portico uses such a group as a backend, never changes
// it, and keeps those nodes out of its own group — what cloud-provider-gcp
// does with its external-instance-groups-prefix
// (providers/gce/gce_instancegroup_external.go, filterNodesWithExistingExternalInstanceGroups).
// With externalTrafficPolicy Cluster a group is reused only when every
// instance in it is an eligible node (else traffic would reach instances the
// Service excludes): otherwise the Service gets ConfigError
// InstanceGroupConflict naming the group.
func (p *Provider) externalGroups(ctx context.Context, log logr.Logger, pl *plan, zone string) ([]string, map[string]bool, error) {
	covered := map[string]bool{}
	if p.opts.ExternalInstanceGroupsPrefix == "" {
		return nil, covered, nil
	}
	var candidates []string
	err := p.call(ctx, "listing instance groups in "+zone, func(ctx context.Context) error {
		candidates = candidates[:0]
		it := p.api.InstanceGroups.List(ctx, &computepb.ListInstanceGroupsRequest{Project: p.opts.Project, Zone: zone,
			Filter: proto.String("name eq " + regexp.QuoteMeta(p.opts.ExternalInstanceGroupsPrefix) + ".*")})
		for {
			ig, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			if strings.HasPrefix(ig.GetName(), p.opts.ExternalInstanceGroupsPrefix) && ig.GetName() != InstanceGroupName(pl.key.ClusterID) {
				candidates = append(candidates, ig.GetName())
			}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(candidates)
	var links []string
	for _, name := range candidates {
		m, err := p.members(ctx, zone, name)
		if err != nil {
			return nil, nil, err
		}
		var mine, foreign []string
		for inst := range m {
			if slices.Contains(pl.zones[zone], inst) {
				mine = append(mine, inst)
			} else {
				foreign = append(foreign, inst)
			}
		}
		if len(mine) == 0 {
			continue
		}
		link := "projects/" + p.opts.Project + "/zones/" + zone + "/instanceGroups/" + name
		if pl.exactMembers && len(foreign) > 0 {
			slices.Sort(foreign)
			return nil, nil, providers.Configf(ReasonInstanceGroupConflict,
				"nodes of this Service are in instance group %s, which also holds instances the Service does not balance to (%s); an instance may be in only one load-balanced instance group, so Portico can neither use that group nor its own: use externalTrafficPolicy Local, or make the group hold only eligible nodes",
				link, strings.Join(foreign, ", "))
		}
		log.V(1).Info("Using an existing instance group", "instanceGroup", name, "zone", zone, "instances", len(mine))
		links = append(links, link)
		for _, inst := range mine {
			covered[inst] = true
		}
	}
	return links, covered, nil
}

func (p *Provider) getInstanceGroup(ctx context.Context, zone, name string) (*computepb.InstanceGroup, error) {
	ig, found, err := get(ctx, p, "reading instance group "+zone+"/"+name, func(ctx context.Context) (*computepb.InstanceGroup, error) {
		return p.api.InstanceGroups.Get(ctx, &computepb.GetInstanceGroupRequest{Project: p.opts.Project, Zone: zone, InstanceGroup: name})
	})
	if err != nil || !found {
		return nil, err
	}
	return ig, nil
}

// members lists an instance group's instances (relative links), page by page.
func (p *Provider) members(ctx context.Context, zone, name string) (map[string]bool, error) {
	out := map[string]bool{}
	err := p.call(ctx, "listing instances of "+zone+"/"+name, func(ctx context.Context) error {
		clear(out)
		it := p.api.InstanceGroups.ListInstances(ctx, &computepb.ListInstancesInstanceGroupsRequest{
			Project: p.opts.Project, Zone: zone, InstanceGroup: name,
			InstanceGroupsListInstancesRequestResource: &computepb.InstanceGroupsListInstancesRequest{InstanceState: proto.String("ALL")},
		})
		for {
			inst, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			out[relLink(inst.GetInstance())] = true
		}
	})
	return out, err
}

func (p *Provider) ensureBackendService(ctx context.Context, log logr.Logger, pl *plan, hc string, groups map[string]string, have *computepb.BackendService, rules map[providers.Protocol]*computepb.ForwardingRule) (string, error) {
	name := BaseName(pl.key)
	link := p.regional("backendServices", name)
	scheme := "EXTERNAL"
	if pl.internal {
		scheme = "INTERNAL"
	}
	protocol := "UNSPECIFIED" // mixed TCP and UDP: one rule per protocol over one backend service
	if len(pl.protocols) == 1 {
		protocol = string(pl.protocols[0])
	}
	var backends []*computepb.Backend
	for _, z := range sortedKeys(groups) {
		backends = append(backends, &computepb.Backend{Group: proto.String(groups[z]), BalancingMode: proto.String(balancingConnection)})
	}
	want := &computepb.BackendService{
		Name:                proto.String(name),
		Description:         proto.String(description(pl.key, nil)),
		LoadBalancingScheme: proto.String(scheme),
		Protocol:            proto.String(protocol),
		HealthChecks:        []string{hc},
		Backends:            backends,
		SessionAffinity:     proto.String(pl.affinity),
	}
	if pl.internal {
		want.Network = proto.String(p.opts.Network)
	}
	found := have != nil
	var err error
	if found && have.GetLoadBalancingScheme() == scheme && have.GetProtocol() != protocol {
		// The protocol cannot change while a forwarding rule references the
		// backend service: delete the rules first (ensureRules recreates
		// them; a reserved address keeps the IP), as cloud-provider-gcp's
		// ensureInternalLoadBalancer does (providers/gce/gce_loadbalancer_internal.go).
		log.Info("Deleting forwarding rules before a backend service protocol change", "backendService", name, "from", have.GetProtocol(), "to", protocol)
		for _, proto := range allProtocols {
			if rules[proto] != nil {
				if err := p.deleteRule(ctx, log, pl.key, proto); err != nil {
					return "", err
				}
				delete(rules, proto)
			}
		}
	}
	if found && have.GetLoadBalancingScheme() != scheme {
		// The scheme is immutable: rebuild the rules and the backend service.
		log.Info("Replacing backend service after a scheme change", "backendService", name)
		for _, proto := range allProtocols {
			if rules[proto] != nil {
				if err := p.deleteRule(ctx, log, pl.key, proto); err != nil {
					return "", err
				}
				delete(rules, proto)
			}
		}
		if err := p.deleteBackendService(ctx, log, pl.key); err != nil {
			return "", err
		}
		found = false
	}
	switch {
	case !found:
		log.Info("Creating backend service", "backendService", name, "backends", len(backends))
		err = created(p.do(ctx, "creating backend service "+name, func(ctx context.Context) (*compute.Operation, error) {
			return p.api.BackendServices.Insert(ctx, &computepb.InsertRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region, BackendServiceResource: want})
		}))
	case !backendServiceMatches(have, want):
		log.Info("Updating backend service", "backendService", name, "backends", len(backends))
		want.Fingerprint = have.Fingerprint
		err = p.do(ctx, "updating backend service "+name, func(ctx context.Context) (*compute.Operation, error) {
			return p.api.BackendServices.Patch(ctx, &computepb.PatchRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region, BackendService: name, BackendServiceResource: want})
		})
	}
	return link, err
}

func backendServiceMatches(have, want *computepb.BackendService) bool {
	links := func(bs *computepb.BackendService) []string {
		var out []string
		for _, b := range bs.GetBackends() {
			out = append(out, relLink(b.GetGroup())+"|"+b.GetBalancingMode())
		}
		sort.Strings(out)
		return out
	}
	hcs := func(bs *computepb.BackendService) []string {
		var out []string
		for _, h := range bs.GetHealthChecks() {
			out = append(out, relLink(h))
		}
		sort.Strings(out)
		return out
	}
	affinity := have.GetSessionAffinity()
	if affinity == "" {
		affinity = "NONE"
	}
	return have.GetProtocol() == want.GetProtocol() && affinity == want.GetSessionAffinity() &&
		slices.Equal(links(have), links(want)) && slices.Equal(hcs(have), hcs(want))
}

// ensureRules makes one forwarding rule per protocol in use and deletes the
// others; it returns the load balancer's IP.
func (p *Provider) ensureRules(ctx context.Context, log logr.Logger, pl *plan, ip, bs string, rules map[providers.Protocol]*computepb.ForwardingRule) (string, error) {
	for _, protocol := range allProtocols {
		name := ForwardingRuleName(pl.key, protocol)
		have := rules[protocol]
		if _, used := pl.ports[protocol]; !used {
			if have != nil {
				if err := p.deleteRule(ctx, log, pl.key, protocol); err != nil {
					return "", err
				}
			}
			continue
		}
		want := p.rule(pl, protocol, ip, bs)
		if have != nil && !ruleMatches(have, want) {
			log.Info("Replacing forwarding rule", "forwardingRule", name)
			if err := p.deleteRule(ctx, log, pl.key, protocol); err != nil {
				return "", err
			}
			have = nil
		}
		if have == nil {
			log.Info("Creating forwarding rule", "forwardingRule", name, "ip", ip)
			if err := created(p.do(ctx, "creating forwarding rule "+name, func(ctx context.Context) (*compute.Operation, error) {
				return p.api.ForwardingRules.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: p.opts.Project, Region: p.opts.Region, ForwardingRuleResource: want})
			})); err != nil {
				return "", err
			}
			r, err := p.getRule(ctx, pl.key, protocol)
			if err != nil {
				return "", err
			}
			if r == nil {
				return "", providers.Retry(fmt.Errorf("forwarding rule %s not readable after creation", name), p.opts.RetryAfter/5)
			}
			have = r
		}
		// Labels sent at insert are ignored by the API: they are set here,
		// with the rule's current labelFingerprint
		// (https://cloud.google.com/compute/docs/reference/rest/v1/forwardingRules/setLabels).
		if wantLabels := labels(pl.key); !maps.Equal(have.GetLabels(), wantLabels) {
			log.Info("Labelling forwarding rule", "forwardingRule", name)
			if err := p.do(ctx, "labelling forwarding rule "+name, func(ctx context.Context) (*compute.Operation, error) {
				return p.api.ForwardingRules.SetLabels(ctx, &computepb.SetLabelsForwardingRuleRequest{Project: p.opts.Project, Region: p.opts.Region, Resource: name,
					RegionSetLabelsRequestResource: &computepb.RegionSetLabelsRequest{Labels: wantLabels, LabelFingerprint: have.LabelFingerprint}})
			}); err != nil {
				return "", err
			}
		}
		if ip == "" {
			ip = have.GetIPAddress()
		}
	}
	return ip, nil
}

func (p *Provider) rule(pl *plan, protocol providers.Protocol, ip, bs string) *computepb.ForwardingRule {
	ports := pl.ports[protocol]
	list, portRange, all := rulePorts(ports, pl.internal)
	r := &computepb.ForwardingRule{
		Name:           proto.String(ForwardingRuleName(pl.key, protocol)),
		Description:    proto.String(description(pl.key, map[string]string{descPortsKey: strings.Join(portList(ports), ",")})),
		IPProtocol:     proto.String(string(protocol)),
		BackendService: proto.String(bs),
		Ports:          list,
	}
	if portRange != "" {
		r.PortRange = proto.String(portRange)
	}
	if all {
		r.AllPorts = proto.Bool(true)
	}
	if !pl.ephemeral && ip != "" {
		r.IPAddress = proto.String(ip)
	}
	if pl.internal {
		r.LoadBalancingScheme = proto.String("INTERNAL")
		r.Network = proto.String(p.opts.Network)
		r.Subnetwork = proto.String(pl.subnet)
	} else {
		r.LoadBalancingScheme = proto.String("EXTERNAL")
		r.NetworkTier = proto.String(pl.tier)
	}
	return r
}

// ruleMatches compares the fields that cannot change in place.
func ruleMatches(have, want *computepb.ForwardingRule) bool {
	sortedPorts := func(r *computepb.ForwardingRule) []string {
		out := slices.Clone(r.GetPorts())
		sort.Strings(out)
		return out
	}
	return (want.IPAddress == nil || have.GetIPAddress() == want.GetIPAddress()) &&
		have.GetIPProtocol() == want.GetIPProtocol() &&
		slices.Equal(sortedPorts(have), sortedPorts(want)) &&
		have.GetPortRange() == want.GetPortRange() &&
		have.GetAllPorts() == want.GetAllPorts() &&
		relLink(have.GetBackendService()) == relLink(want.GetBackendService()) &&
		have.GetLoadBalancingScheme() == want.GetLoadBalancingScheme() &&
		(want.NetworkTier == nil || have.GetNetworkTier() == want.GetNetworkTier()) &&
		relLink(have.GetSubnetwork()) == relLink(want.GetSubnetwork()) &&
		have.GetDescription() == want.GetDescription()
}

// ensureFirewalls admits client traffic from the source ranges and
// health-check probes from Google's ranges, both to the load balancer's IP
// (and, with --gcp-node-tags, only on the cluster's nodes).
func (p *Provider) ensureFirewalls(ctx context.Context, log logr.Logger, pl *plan, ip string, have map[string]*computepb.Firewall) error {
	if !validIPv4(ip) {
		return providers.Retry(fmt.Errorf("load balancer %s has no address yet", BaseName(pl.key)), p.opts.RetryAfter/5)
	}
	var allowed []*computepb.Allowed
	for _, protocol := range pl.protocols {
		allowed = append(allowed, &computepb.Allowed{IPProtocol: proto.String(strings.ToLower(string(protocol))), Ports: portList(pl.ports[protocol])})
	}
	hcRanges := slices.Clone(HealthCheckRanges)
	if !pl.internal {
		hcRanges = append(hcRanges, ExternalHealthCheckRanges...)
	}
	sort.Strings(hcRanges)
	want := []*computepb.Firewall{
		p.firewall(pl, BaseName(pl.key), ip, pl.sourceRanges, allowed),
		p.firewall(pl, HealthCheckFirewallName(pl.key), ip, hcRanges,
			[]*computepb.Allowed{{IPProtocol: proto.String("tcp"), Ports: portList([]int32{pl.hcPort})}}),
	}
	if pl.restricted {
		// Other rules of the network (default-allow-internal, a cluster's
		// own node rules) would admit clients outside the ranges; a deny
		// rule one priority after Portico's allow rules shuts them out.
		// GCP applies the matching rule with the lowest priority number
		// (https://cloud.google.com/firewall/docs/firewalls#priority_order_for_firewall_rules).
		deny := p.firewall(pl, DenyFirewallName(pl.key), ip, []string{"0.0.0.0/0"}, nil)
		deny.Denied = []*computepb.Denied{{IPProtocol: proto.String("all")}}
		deny.Priority = proto.Int32(firewallPriority + 1)
		want = append(want, deny)
	}
	for _, fw := range want {
		if err := p.ensureFirewall(ctx, log, fw, have[fw.GetName()]); err != nil {
			return err
		}
	}
	if fw := have[DenyFirewallName(pl.key)]; fw != nil && !pl.restricted {
		log.Info("Deleting firewall rule", "firewall", fw.GetName())
		return deleted(p.do(ctx, "deleting firewall "+fw.GetName(), func(ctx context.Context) (*compute.Operation, error) {
			return p.api.Firewalls.Delete(ctx, &computepb.DeleteFirewallRequest{Project: p.networkProject(), Firewall: fw.GetName()})
		}))
	}
	return nil
}

func (p *Provider) firewall(pl *plan, name, ip string, sources []string, allowed []*computepb.Allowed) *computepb.Firewall {
	return &computepb.Firewall{
		Name:              proto.String(name),
		Description:       proto.String(description(pl.key, map[string]string{markRegion: p.opts.Region})),
		Network:           proto.String(p.opts.Network),
		Direction:         proto.String("INGRESS"),
		Priority:          proto.Int32(firewallPriority),
		SourceRanges:      sources,
		DestinationRanges: []string{ip + "/32"},
		Allowed:           allowed,
		TargetTags:        slices.Sorted(slices.Values(p.opts.NodeTags)),
	}
}

// firewallInRegion reports whether a global firewall rule belongs to this
// provider's region: its description's portico.dev/region is this region, or
// absent (rules written before the mark existed are adopted and marked).
func (p *Provider) firewallInRegion(fw *computepb.Firewall) bool {
	r := Marks(fw.GetDescription())[markRegion]
	return r == "" || r == p.opts.Region
}

func (p *Provider) ensureFirewall(ctx context.Context, log logr.Logger, want, have *computepb.Firewall) error {
	name := want.GetName()
	switch {
	case have == nil:
		log.Info("Creating firewall rule", "firewall", name)
		return created(p.do(ctx, "creating firewall "+name, func(ctx context.Context) (*compute.Operation, error) {
			return p.api.Firewalls.Insert(ctx, &computepb.InsertFirewallRequest{Project: p.networkProject(), FirewallResource: want})
		}))
	case !firewallMatches(have, want):
		log.Info("Updating firewall rule", "firewall", name)
		return p.do(ctx, "updating firewall "+name, func(ctx context.Context) (*compute.Operation, error) {
			return p.api.Firewalls.Update(ctx, &computepb.UpdateFirewallRequest{Project: p.networkProject(), Firewall: name, FirewallResource: want})
		})
	}
	return nil
}

func firewallMatches(have, want *computepb.Firewall) bool {
	sorted := func(s []string) []string { out := slices.Clone(s); sort.Strings(out); return out }
	allowed := func(f *computepb.Firewall) []string {
		var out []string
		for _, a := range f.GetAllowed() {
			out = append(out, strings.ToLower(a.GetIPProtocol())+":"+strings.Join(sorted(a.GetPorts()), ","))
		}
		return sorted(out)
	}
	return relLink(have.GetNetwork()) == relLink(want.GetNetwork()) &&
		have.GetDirection() == want.GetDirection() &&
		have.GetPriority() == want.GetPriority() &&
		slices.Equal(sorted(have.GetSourceRanges()), sorted(want.GetSourceRanges())) &&
		slices.Equal(sorted(have.GetDestinationRanges()), sorted(want.GetDestinationRanges())) &&
		slices.Equal(sorted(have.GetTargetTags()), sorted(want.GetTargetTags())) &&
		slices.Equal(allowed(have), allowed(want)) &&
		slices.Equal(denied(have), denied(want)) &&
		have.GetDescription() == want.GetDescription()
}

func denied(f *computepb.Firewall) []string {
	var out []string
	for _, d := range f.GetDenied() {
		out = append(out, strings.ToLower(d.GetIPProtocol())+":"+strings.Join(d.GetPorts(), ","))
	}
	slices.Sort(out)
	return out
}

// Observe implements providers.Provider.
func (p *Provider) Observe(ctx context.Context, key providers.Key) (*providers.Status, error) {
	pl := &plan{key: key, ports: map[providers.Protocol][]int32{}}
	ip := ""
	for _, protocol := range allProtocols {
		r, err := p.getRule(ctx, key, protocol)
		if err != nil {
			return nil, err
		}
		if r == nil || !ownedBy(r.GetDescription(), key) {
			continue
		}
		pl.protocols = append(pl.protocols, protocol)
		pl.ports[protocol] = parsePortList(Marks(r.GetDescription())[descPortsKey])
		pl.internal = r.GetLoadBalancingScheme() == "INTERNAL"
		pl.tier = r.GetNetworkTier()
		if ip == "" {
			ip = r.GetIPAddress()
		}
	}
	own, err := p.getAddress(ctx, BaseName(key))
	if err != nil {
		return nil, err
	}
	ownAddr := own != nil && ownedBy(own.GetDescription(), key)
	bs, found, err := get(ctx, p, "reading backend service "+BaseName(key), func(ctx context.Context) (*computepb.BackendService, error) {
		return p.api.BackendServices.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region, BackendService: BaseName(key)})
	})
	if err != nil {
		return nil, err
	}
	ownBS := found && ownedBy(bs.GetDescription(), key)
	if len(pl.protocols) == 0 && !ownAddr && !ownBS {
		return nil, providers.ErrNotFound
	}
	if ip == "" && ownAddr {
		ip = own.GetAddress()
	}
	total, healthy := 0, 0
	if ownBS {
		var groups []string
		for _, b := range bs.GetBackends() {
			zone, name, ok := zonalName(b.GetGroup())
			if !ok {
				continue
			}
			m, err := p.members(ctx, zone, name)
			if err != nil {
				return nil, err
			}
			total += len(m)
			groups = append(groups, relLink(b.GetGroup()))
		}
		if healthy, err = p.healthy(ctx, key, groups); err != nil {
			return nil, err
		}
	}
	return p.status(pl, ip, ownAddr, total, healthy), nil
}

// zonalName splits ".../zones/<zone>/instanceGroups/<name>".
func zonalName(link string) (zone, name string, ok bool) {
	parts := strings.Split(relLink(link), "/")
	if len(parts) != 6 || parts[2] != "zones" || parts[4] != "instanceGroups" {
		return "", "", false
	}
	return parts[3], parts[5], true
}

// Delete implements providers.Provider. It removes the Service's resources
// in dependency order (rules, firewalls, backend service, health check,
// address), waiting for each Operation, and then the cluster's instance
// groups the backend service used if no other backend service uses them.
// Resources without the Service's ownership marks are left alone.
func (p *Provider) Delete(ctx context.Context, key providers.Key) error {
	log := logr.FromContextOrDiscard(ctx).WithValues("loadBalancer", BaseName(key))
	for _, protocol := range allProtocols {
		r, err := p.getRule(ctx, key, protocol)
		if err != nil {
			return err
		}
		if r != nil && ownedBy(r.GetDescription(), key) {
			if err := p.deleteRule(ctx, log, key, protocol); err != nil {
				return err
			}
		}
	}
	for _, name := range firewallNames(key) {
		fw, found, err := get(ctx, p, "reading firewall "+name, func(ctx context.Context) (*computepb.Firewall, error) {
			return p.api.Firewalls.Get(ctx, &computepb.GetFirewallRequest{Project: p.networkProject(), Firewall: name})
		})
		if err != nil {
			return err
		}
		if found && ownedBy(fw.GetDescription(), key) && p.firewallInRegion(fw) {
			log.Info("Deleting firewall rule", "firewall", name)
			if err := deleted(p.do(ctx, "deleting firewall "+name, func(ctx context.Context) (*compute.Operation, error) {
				return p.api.Firewalls.Delete(ctx, &computepb.DeleteFirewallRequest{Project: p.networkProject(), Firewall: name})
			})); err != nil {
				return err
			}
		}
	}
	bs, found, err := get(ctx, p, "reading backend service "+BaseName(key), func(ctx context.Context) (*computepb.BackendService, error) {
		return p.api.BackendServices.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region, BackendService: BaseName(key)})
	})
	if err != nil {
		return err
	}
	var groups []string
	if found && ownedBy(bs.GetDescription(), key) {
		for _, b := range bs.GetBackends() {
			groups = append(groups, b.GetGroup())
		}
		if err := p.deleteBackendService(ctx, log, key); err != nil {
			return err
		}
	} else if !found {
		// The backend service is gone, perhaps deleted by an earlier Delete
		// that died before collecting the groups it used: find the
		// cluster's groups in every zone of the region instead, so none
		// leaks.
		if groups, err = p.clusterGroups(ctx, key.ClusterID); err != nil {
			return err
		}
	}
	hc, found, err := get(ctx, p, "reading health check "+BaseName(key), func(ctx context.Context) (*computepb.HealthCheck, error) {
		return p.api.HealthChecks.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: p.opts.Project, Region: p.opts.Region, HealthCheck: BaseName(key)})
	})
	if err != nil {
		return err
	}
	if found && ownedBy(hc.GetDescription(), key) {
		log.Info("Deleting health check", "healthCheck", BaseName(key))
		if err := deleted(p.do(ctx, "deleting health check "+BaseName(key), func(ctx context.Context) (*compute.Operation, error) {
			return p.api.HealthChecks.Delete(ctx, &computepb.DeleteRegionHealthCheckRequest{Project: p.opts.Project, Region: p.opts.Region, HealthCheck: BaseName(key)})
		})); err != nil {
			return err
		}
	}
	addr, err := p.getAddress(ctx, BaseName(key))
	if err != nil {
		return err
	}
	if addr != nil && ownedBy(addr.GetDescription(), key) {
		if err := p.deleteAddress(ctx, log, key); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if err := p.collectInstanceGroup(ctx, log, key.ClusterID, g); err != nil {
			return err
		}
	}
	return nil
}

// clusterGroups lists the links of the cluster's instance groups in every
// zone of the region (one aggregatedList call).
func (p *Provider) clusterGroups(ctx context.Context, clusterID string) ([]string, error) {
	var out []string
	err := p.call(ctx, "listing the cluster's instance groups", func(ctx context.Context) error {
		out = out[:0]
		it := p.api.InstanceGroups.AggregatedList(ctx, &computepb.AggregatedListInstanceGroupsRequest{Project: p.opts.Project,
			Filter: proto.String("name eq " + InstanceGroupName(clusterID))})
		for {
			pair, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			zone := strings.TrimPrefix(pair.Key, "zones/")
			if RegionOf(zone) != p.opts.Region {
				continue
			}
			for _, ig := range pair.Value.GetInstanceGroups() {
				if ig.GetName() == InstanceGroupName(clusterID) {
					out = append(out, "projects/"+p.opts.Project+"/zones/"+zone+"/instanceGroups/"+ig.GetName())
				}
			}
		}
	})
	sort.Strings(out)
	return out, err
}

// collectInstanceGroup deletes a cluster instance group that no backend
// service references any more; Compute Engine refuses (resourceInUse) while
// another Service's backend service still uses it, and then it stays.
func (p *Provider) collectInstanceGroup(ctx context.Context, log logr.Logger, clusterID, link string) error {
	zone, name, ok := zonalName(link)
	if !ok || name != InstanceGroupName(clusterID) {
		return nil
	}
	ig, err := p.getInstanceGroup(ctx, zone, name)
	if err != nil || ig == nil || !ownedByCluster(ig.GetDescription(), clusterID) {
		return err
	}
	var op *compute.Operation
	err = p.call(ctx, "deleting instance group "+link, func(ctx context.Context) error {
		var e error
		op, e = p.api.InstanceGroups.Delete(ctx, &computepb.DeleteInstanceGroupRequest{Project: p.opts.Project, Zone: zone, InstanceGroup: name})
		return e
	})
	switch classify(err) {
	case kindNotFound:
		return nil
	case kindInUse:
		log.V(1).Info("Keeping instance group still used by other Services", "instanceGroup", name, "zone", zone)
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("Deleted unused instance group", "instanceGroup", name, "zone", zone)
	return deleted(p.call(ctx, "deleting instance group "+link+" (waiting for operation)", func(ctx context.Context) error { return op.Wait(ctx) }))
}

func (p *Provider) deleteRule(ctx context.Context, log logr.Logger, key providers.Key, protocol providers.Protocol) error {
	name := ForwardingRuleName(key, protocol)
	log.Info("Deleting forwarding rule", "forwardingRule", name)
	return deleted(p.do(ctx, "deleting forwarding rule "+name, func(ctx context.Context) (*compute.Operation, error) {
		return p.api.ForwardingRules.Delete(ctx, &computepb.DeleteForwardingRuleRequest{Project: p.opts.Project, Region: p.opts.Region, ForwardingRule: name})
	}))
}

func (p *Provider) deleteBackendService(ctx context.Context, log logr.Logger, key providers.Key) error {
	name := BaseName(key)
	log.Info("Deleting backend service", "backendService", name)
	return deleted(p.do(ctx, "deleting backend service "+name, func(ctx context.Context) (*compute.Operation, error) {
		return p.api.BackendServices.Delete(ctx, &computepb.DeleteRegionBackendServiceRequest{Project: p.opts.Project, Region: p.opts.Region, BackendService: name})
	}))
}

func (p *Provider) deleteAddress(ctx context.Context, log logr.Logger, key providers.Key) error {
	name := BaseName(key)
	log.Info("Releasing address", "address", name)
	return deleted(p.do(ctx, "releasing address "+name, func(ctx context.Context) (*compute.Operation, error) {
		return p.api.Addresses.Delete(ctx, &computepb.DeleteAddressRequest{Project: p.opts.Project, Region: p.opts.Region, Address: name})
	}))
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
