// Package azure builds Portico load balancers on Azure Standard Load
// Balancer through azure-sdk-for-go (armnetwork).
//
// Like cloud-provider-azure, it runs one shared Standard load balancer per
// cluster for public Services and one for internal Services, which is far
// cheaper than one per Service. Each Service gets its own frontend IP
// configuration (on its own public IP, or an internal IP in a subnet), its own
// IP-based backend pool holding the eligible nodes' InternalIPs (or the ready
// pod IPs with pod targets), one health probe and one rule per port, and one
// inbound rule in the nodes' network security group carrying its
// loadBalancerSourceRanges. See docs/providers/azure.md.
package azure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v6"
	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// Name is the backend name; its class is lb.portico.dev/azure.
const Name = "azure"

// CostKind is the priced product reported in CostInputs.
const CostKind = "azure-standard-lb"

// Options configure the provider.
type Options struct {
	// ClusterID goes into ownership tags and resource names.
	ClusterID string

	SubscriptionID string
	ResourceGroup  string
	Location       string
	// VNetName and VNetResourceGroup (default ResourceGroup) locate the
	// nodes' virtual network, which IP-based backend pools refer to.
	VNetName          string
	VNetResourceGroup string
	// SubnetName is the default subnet of internal frontends.
	SubnetName string
	// SecurityGroupName and SecurityGroupResourceGroup (default
	// ResourceGroup) locate the nodes' NSG; empty disables NSG rules.
	SecurityGroupName          string
	SecurityGroupResourceGroup string
	// AllowedResourceGroups are resource groups, besides ResourceGroup,
	// whose public IP prefixes Services may name: a name in SubscriptionID
	// or /subscriptions/<id>/resourceGroups/<name>.
	AllowedResourceGroups []string
	// LoadBalancerName is the shared public load balancer; the internal one
	// is LoadBalancerName + "-internal". Default portico-<cluster-id>.
	LoadBalancerName string

	// OutboundSNAT lets the public load balancer's rules provide the
	// backends' outbound SNAT (disableOutboundSnat false). By default they
	// do not: the nodes already reach the internet through the cluster's
	// own outbound path (AKS's load balancer outbound rule, a NAT gateway,
	// a firewall route), which a second public load balancer must not
	// take over (see docs/providers/azure.md, "Outbound SNAT").
	OutboundSNAT bool

	// BatchWindow is how long writes to a shared load balancer are
	// collected before one PUT carries them all.
	BatchWindow time.Duration
	// PollInterval is the LRO polling interval when Azure sends no
	// Retry-After (default 5s).
	PollInterval time.Duration

	// Credential and ClientOptions build the SDK clients (cloud, endpoint,
	// transport, retry). Required unless all three clients below are set.
	Credential    azcore.TokenCredential
	ClientOptions *arm.ClientOptions

	// Optional pre-built clients.
	LoadBalancers     LoadBalancersAPI
	PublicIPAddresses PublicIPAddressesAPI
	SecurityRules     SecurityRulesAPI
}

// sdkRetryStatusCodes are the answers the SDK retries by itself: timeouts
// and 5xx, not 429 (see New).
var sdkRetryStatusCodes = []int{408, 500, 502, 503, 504}

// Provider is the azure backend.
type Provider struct {
	opts     Options
	lbs      LoadBalancersAPI
	pips     PublicIPAddressesAPI
	rules    SecurityRulesAPI
	writer   *writer
	nsgMu    sync.Mutex     // NSG rule priorities are picked one at a time
	reserved map[int32]bool // priorities of rules being created
	retry    policy.RetryOptions

	settledMu sync.Mutex
	settled   map[string]string // base name -> load balancer, see settledIn
}

var _ providers.Provider = (*Provider)(nil)

// New returns a provider. The SDK's own retries are limited to 5xx and
// timeouts: ARM throttling (429) surfaces at once as a
// *providers.RetryError carrying Azure's Retry-After, so that the controller
// requeues instead of blocking a worker for minutes.
func New(opts Options) (*Provider, error) {
	for flag, v := range map[string]string{"subscription ID": opts.SubscriptionID, "resource group": opts.ResourceGroup, "location": opts.Location} {
		if v == "" {
			return nil, fmt.Errorf("azure provider: no %s configured", flag)
		}
	}
	if err := providers.ValidateClusterID(opts.ClusterID); err != nil {
		return nil, fmt.Errorf("azure provider: %w", err)
	}
	if opts.LoadBalancerName == "" {
		opts.LoadBalancerName = "portico-" + sanitizeName(cmpOr(opts.ClusterID, "cluster"))
	}
	if opts.VNetResourceGroup == "" {
		opts.VNetResourceGroup = opts.ResourceGroup
	}
	if opts.SecurityGroupResourceGroup == "" {
		opts.SecurityGroupResourceGroup = opts.ResourceGroup
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.BatchWindow < 0 {
		opts.BatchWindow = 0
	}
	p := &Provider{opts: opts, lbs: opts.LoadBalancers, pips: opts.PublicIPAddresses, rules: opts.SecurityRules}
	if p.lbs == nil || p.pips == nil || p.rules == nil {
		if opts.Credential == nil {
			return nil, errors.New("azure provider: no credential")
		}
		co := &arm.ClientOptions{}
		if opts.ClientOptions != nil {
			co = opts.ClientOptions.Clone()
		}
		if len(co.Retry.StatusCodes) == 0 {
			co.Retry.StatusCodes = sdkRetryStatusCodes
		}
		p.retry = co.Retry
		factory, err := armnetwork.NewClientFactory(opts.SubscriptionID, opts.Credential, co)
		if err != nil {
			return nil, fmt.Errorf("azure provider: building clients: %w", err)
		}
		if p.lbs == nil {
			p.lbs = factory.NewLoadBalancersClient()
		}
		if p.pips == nil {
			p.pips = factory.NewPublicIPAddressesClient()
		}
		if p.rules == nil {
			p.rules = factory.NewSecurityRulesClient()
		}
	}
	if len(p.retry.StatusCodes) == 0 {
		p.retry.StatusCodes = sdkRetryStatusCodes
	}
	p.writer = &writer{p: p, queues: map[string]*lbQueue{}}
	p.reserved = map[int32]bool{}
	p.settled = map[string]string{}
	return p, nil
}

// Class implements providers.Provider.
func (p *Provider) Class() string { return providers.Class(Name) }

// Reasons of the azure backend's ConfigErrors.
const (
	// ReasonPodTargetsNeedVNet: pod targets without --azure-vnet-name.
	ReasonPodTargetsNeedVNet = "PodTargetsNeedVNet"
	// ReasonNoVirtualNetwork: backend pools are IP-based, and IP-based
	// backend addresses name their virtual network; there is none
	// configured (--azure-vnet-name).
	ReasonNoVirtualNetwork = "NoVirtualNetwork"
	// ReasonUnsupportedAnnotation: a cloud-neutral annotation the azure
	// backend cannot honour.
	ReasonUnsupportedAnnotation = "UnsupportedAnnotation"
	// ReasonQuotaExceeded: Azure refused a change because a quota or limit
	// is reached; the message names it.
	ReasonQuotaExceeded = "QuotaExceeded"
)

var _ providers.PodTargeter = (*Provider)(nil)

// TargetsPods implements providers.PodTargeter: pod IPs go into an IP-based
// backend pool in the cluster's virtual network.
func (p *Provider) TargetsPods() bool { return true }

// LoadBalancerWrites returns how many load balancer PUTs and DELETEs the
// provider made and how many Service changes they carried.
func (p *Provider) LoadBalancerWrites() (writes, changes int64) {
	return p.writer.writes.Load(), p.writer.included.Load()
}

// ResourceName is the deterministic name of key's parts: its public IP,
// frontend, backend pool, probe, NSG rule, and the prefix of its rules.
func ResourceName(key providers.Key) string {
	sum := sha256.Sum256([]byte(key.ClusterID + "/" + key.Namespace + "/" + key.Name))
	return "portico-" + hex.EncodeToString(sum[:])[:16]
}

// LoadBalancerNames returns the shared public and internal load balancers.
func (p *Provider) LoadBalancerNames() (public, internal string) {
	return p.opts.LoadBalancerName, p.opts.LoadBalancerName + "-internal"
}

func (p *Provider) loadBalancerID(name string) string {
	return armID(p.opts.SubscriptionID, p.opts.ResourceGroup, "loadBalancers", name)
}

func (p *Provider) publicIPID(name string) string {
	return armID(p.opts.SubscriptionID, p.opts.ResourceGroup, "publicIPAddresses", name)
}

func (p *Provider) vnetID() string {
	if p.opts.VNetName == "" {
		return ""
	}
	return armID(p.opts.SubscriptionID, p.opts.VNetResourceGroup, "virtualNetworks", p.opts.VNetName)
}

func armID(sub, rg, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/%s/%s", sub, rg, typ, name)
}

func (p *Provider) ownsLoadBalancer(lb *armnetwork.LoadBalancer) bool {
	return deref(lb.Tags[TagManagedBy]) == providers.ManagedByValue &&
		deref(lb.Tags[TagCluster]) == p.opts.ClusterID
}

func (p *Provider) newLoadBalancer(name string) *armnetwork.LoadBalancer {
	return &armnetwork.LoadBalancer{
		Location: ptr(p.opts.Location),
		Tags:     clusterTags(p.opts.ClusterID),
		SKU: &armnetwork.LoadBalancerSKU{
			Name: ptr(armnetwork.LoadBalancerSKUNameStandard),
			Tier: ptr(armnetwork.LoadBalancerSKUTierRegional),
		},
		Properties: &armnetwork.LoadBalancerPropertiesFormat{},
	}
}

// Ensure implements providers.Provider. The steps, each idempotent and each
// adopting what an interrupted earlier run left: the public IP (external
// only), its NSG rules (before any traffic can reach the frontend, see
// buildSecurityRules), the Service's parts in the shared load balancer (one
// batched, ETag-guarded write), and the removal of its parts from the other
// shared load balancer and of a public IP it no longer uses.
func (p *Provider) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	settings, err := ParseAnnotations(d.Annotations)
	if err != nil {
		return nil, err
	}
	if err := validateDesired(d, settings); err != nil {
		return nil, err
	}
	if len(d.SourceRanges) > 0 && p.opts.SecurityGroupName == "" {
		return nil, providers.Configf(providers.ReasonSourceRangesNotEnforceable,
			"loadBalancerSourceRanges are enforced by rules in the nodes' network security group, and the operator has none configured (--azure-security-group-name, or securityGroupName in the cloud config); nothing is created or changed")
	}
	if err := p.allowPrefix(settings.PublicIPPrefix); err != nil {
		return nil, err
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("service", d.Key.String())
	ctx = logr.NewContext(ctx, log)
	base := ResourceName(d.Key)
	public, internal := p.LoadBalancerNames()
	lbName, other := public, internal

	if d.TargetPods && p.opts.VNetName == "" {
		return nil, providers.Configf(ReasonPodTargetsNeedVNet, "allocateLoadBalancerNodePorts is false: pod IPs go into an IP-based backend pool, which needs the cluster's virtual network (--azure-vnet-name)")
	}
	if p.opts.VNetName == "" {
		// https://learn.microsoft.com/azure/load-balancer/backend-pool-management#configure-backend-pool-by-ip-address-and-virtual-network
		return nil, providers.Configf(ReasonNoVirtualNetwork, "the azure backend puts the nodes' IPs into IP-based backend pools, and Azure needs the virtual network of each address: set --azure-vnet-name (or vnetName in the cloud config); nothing is created or changed")
	}
	// Build the parts once before any call, so that input Azure cannot carry
	// fails before anything is created.
	in := partsInput{LoadBalancerID: p.loadBalancerID(lbName), VNetID: p.vnetID(), Desired: d, Settings: settings,
		DisableOutboundSNAT: d.Scheme != providers.SchemeInternal && !p.opts.OutboundSNAT}
	if _, err := buildParts(in); err != nil {
		return nil, err
	}
	var spec frontendSpec
	var pip *armnetwork.PublicIPAddress
	if d.Scheme == providers.SchemeInternal {
		lbName, other = internal, public
		subnet := cmpOr(settings.Subnet, p.opts.SubnetName)
		if p.opts.VNetName == "" || subnet == "" {
			return nil, providers.Configf("NoSubnet", "an internal load balancer needs a VNet and a subnet (--azure-vnet-name, --azure-subnet-name or %s)", AnnotationSubnet)
		}
		spec.SubnetID = p.vnetID() + "/subnets/" + subnet
		if len(d.RequestedIPs) > 0 {
			spec.PrivateIP = d.RequestedIPs[0].String()
		}
	} else {
		if pip, err = p.ensurePublicIP(ctx, d.Key, settings); err != nil {
			return nil, err
		}
		spec.PublicIPID = deref(pip.ID)
	}

	in.LoadBalancerID, in.Frontend = p.loadBalancerID(lbName), spec
	pt, err := buildParts(in)
	if err != nil {
		return nil, err
	}
	// The NSG rules go first: until the deny rule exists, the NSG's default
	// AllowVnetInBound would admit the whole VNet to a new internal frontend.
	if err := p.ensureSecurityRules(ctx, d, pt); err != nil {
		return nil, err
	}
	var prevPIP string
	lb, err := p.writer.submit(ctx, lbName, &change{apply: func(lb *armnetwork.LoadBalancer) bool {
		changed, prev := applyParts(lb, pt)
		prevPIP = prev
		return changed
	}})
	if err != nil {
		return nil, err
	}
	// A Service that switched scheme leaves parts in the other load
	// balancer. Once this process has seen the Service settled in lbName,
	// only this process could have put it elsewhere, so the check is made
	// once per Service and process.
	var otherPIP string
	if p.settledIn(d.Key) != lbName {
		if _, err := p.writer.submit(ctx, other, &change{remove: true, apply: func(lb *armnetwork.LoadBalancer) bool {
			changed, prev := removeParts(lb, base)
			otherPIP = prev
			return changed
		}}); err != nil {
			return nil, err
		}
	}
	for _, old := range []string{prevPIP, otherPIP} {
		if old != "" && !strings.EqualFold(old, spec.PublicIPID) {
			if err := p.deletePublicIP(ctx, d.Key, nameFromID(old)); err != nil {
				return nil, err
			}
		}
	}
	p.settle(d.Key, lbName)
	return p.status(lb, base, pip)
}

// settledIn returns the load balancer key's parts were last written to by
// this process, with the other one cleared, or "".
func (p *Provider) settledIn(key providers.Key) string {
	p.settledMu.Lock()
	defer p.settledMu.Unlock()
	return p.settled[ResourceName(key)]
}

func (p *Provider) settle(key providers.Key, lbName string) {
	p.settledMu.Lock()
	defer p.settledMu.Unlock()
	if lbName == "" {
		delete(p.settled, ResourceName(key))
		return
	}
	p.settled[ResourceName(key)] = lbName
}

// validateDesired rejects what an Azure Standard load balancer cannot build,
// and cloud-neutral annotations the backend cannot honour.
func validateDesired(d *providers.LoadBalancer, s Settings) error {
	if d.SharingKey != "" {
		return providers.Configf(ReasonUnsupportedAnnotation, "%s: the azure backend gives every Service its own frontend and address and cannot share one between Services; remove the annotation, or put the ports into one Service (one Azure frontend carries TCP and UDP ports together)", model.AnnotationAllowSharedIP)
	}
	if d.DualStack || (len(d.IPFamilies) > 0 && d.IPFamilies[0] != "IPv4") {
		return providers.Configf("UnsupportedIPFamily", "the azure provider builds IPv4 load balancers only; set ipFamilies: [IPv4]")
	}
	if d.Scheme == providers.SchemeInternal {
		if s.PublicIPName != "" || s.PublicIPPrefix != "" {
			return providers.Configf("InvalidAnnotation", "%s and %s apply to external load balancers only", AnnotationPublicIPName, AnnotationPublicIPPrefix)
		}
		if len(d.RequestedIPs) > 1 || (len(d.RequestedIPs) == 1 && !d.RequestedIPs[0].Is4()) {
			return providers.Configf("InvalidRequestedIP", "an internal Azure load balancer takes one requested IPv4 address, got %v", d.RequestedIPs)
		}
		return nil
	}
	if s.Subnet != "" {
		return providers.Configf("InvalidAnnotation", "%s applies to internal load balancers only (lb.portico.dev/scheme: internal)", AnnotationSubnet)
	}
	if len(d.RequestedIPs) > 0 {
		return providers.Configf("InvalidRequestedIP", "Azure public addresses cannot be requested by IP; create a static public IP and name it in %s", AnnotationPublicIPName)
	}
	return nil
}

// Observe implements providers.Provider.
func (p *Provider) Observe(ctx context.Context, key providers.Key) (*providers.Status, error) {
	base := ResourceName(key)
	public, internal := p.LoadBalancerNames()
	for _, name := range []string{public, internal} {
		lb, err := p.getLoadBalancer(ctx, name)
		if err != nil {
			return nil, err
		}
		if lb == nil || !p.ownsLoadBalancer(lb) {
			continue
		}
		fe := findFrontend(lb, base)
		if fe == nil {
			continue
		}
		var pip *armnetwork.PublicIPAddress
		if fe.Properties != nil && fe.Properties.PublicIPAddress != nil {
			resp, err := p.pips.Get(ctx, p.opts.ResourceGroup, nameFromID(deref(fe.Properties.PublicIPAddress.ID)), nil)
			if err != nil {
				return nil, classify("reading public IP", err)
			}
			pip = &resp.PublicIPAddress
		}
		return p.status(lb, base, pip)
	}
	return nil, providers.ErrNotFound
}

// Delete implements providers.Provider: it takes key's parts out of both
// shared load balancers (deleting a load balancer whose last frontend goes),
// then deletes key's public IP and NSG rule. The public IP is found from the
// removed frontend and under the default name; when no frontend was left to
// tell (a Delete interrupted earlier), every public IP in the resource group
// is checked for key's tags, so a custom-named one cannot leak.
func (p *Provider) Delete(ctx context.Context, key providers.Key) error {
	log := logr.FromContextOrDiscard(ctx).WithValues("service", key.String())
	ctx = logr.NewContext(ctx, log)
	base := ResourceName(key)
	p.settle(key, "")
	public, internal := p.LoadBalancerNames()
	found := false
	pips := []string{base}
	for _, name := range []string{public, internal} {
		var prev string
		var had bool
		if _, err := p.writer.submit(ctx, name, &change{remove: true, apply: func(lb *armnetwork.LoadBalancer) bool {
			had = findFrontend(lb, base) != nil
			changed, pip := removeParts(lb, base)
			prev = pip
			return changed
		}}); err != nil {
			return err
		}
		found = found || had
		if prev != "" && !strings.EqualFold(nameFromID(prev), base) {
			pips = append(pips, nameFromID(prev))
		}
	}
	if !found {
		var err error
		if pips, err = p.taggedPublicIPs(ctx, key); err != nil {
			return err
		}
	}
	for _, name := range pips {
		if err := p.deletePublicIP(ctx, key, name); err != nil {
			return err
		}
	}
	return p.deleteSecurityRules(ctx, key)
}

// taggedPublicIPs lists the public IPs in the resource group tagged for key.
func (p *Provider) taggedPublicIPs(ctx context.Context, key providers.Key) ([]string, error) {
	var out []string
	pager := p.pips.NewListPager(p.opts.ResourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, classify("listing public IPs", err)
		}
		for _, pip := range page.Value {
			if pip != nil && owns(tagMarks(pip.Tags), key) {
				out = append(out, deref(pip.Name))
			}
		}
	}
	return out, nil
}

// status reports the Service's parts in lb.
func (p *Provider) status(lb *armnetwork.LoadBalancer, base string, pip *armnetwork.PublicIPAddress) (*providers.Status, error) {
	fe := findFrontend(lb, base)
	if fe == nil {
		return nil, providers.Retry(errors.New("the load balancer does not show the Service's frontend yet"), transientWait)
	}
	st := &providers.Status{
		Resources: []providers.Resource{
			{Kind: "loadBalancer", ID: deref(lb.ID)},
			{Kind: "frontendIPConfiguration", ID: deref(fe.ID)},
		},
		Backends: providers.Backends{Healthy: -1},
		Cost:     providers.CostInputs{Kind: CostKind, Region: p.opts.Location, Units: map[string]int{"rules": 0, "publicIPs": 0}},
	}
	var ip string
	if pip != nil {
		st.Resources = append(st.Resources, providers.Resource{Kind: "publicIPAddress", ID: deref(pip.ID)})
		st.Cost.Units["publicIPs"] = 1
		if pip.Properties != nil {
			ip = deref(pip.Properties.IPAddress)
		}
	} else if fe.Properties != nil {
		ip = deref(fe.Properties.PrivateIPAddress)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, providers.Retry(fmt.Errorf("frontend %s has no address yet", base), transientWait)
	}
	st.Ingress = []providers.Ingress{{IP: addr, IPMode: providers.IPModeVIP}}
	// The usage meter's id (usage/meters.ParseAzureMeterID): the shared
	// load balancer's metrics are split by frontend address.
	st.Cost.MeterID = deref(lb.ID) + "#" + addr.String()
	for _, r := range lb.Properties.LoadBalancingRules {
		if !ownsChild(base, deref(r.Name)) || deref(r.Name) == base || r.Properties == nil {
			continue
		}
		st.Resources = append(st.Resources, providers.Resource{Kind: "loadBalancingRule", ID: deref(r.ID)})
		st.Ports = append(st.Ports, providers.PortStatus{Port: deref(r.Properties.FrontendPort), Protocol: providers.Protocol(strings.ToUpper(string(deref(r.Properties.Protocol))))})
		st.Cost.Units["rules"]++
	}
	for _, pr := range lb.Properties.Probes {
		if deref(pr.Name) == base {
			st.Resources = append(st.Resources, providers.Resource{Kind: "probe", ID: deref(pr.ID)})
		}
	}
	for _, bp := range lb.Properties.BackendAddressPools {
		if deref(bp.Name) == base {
			st.Resources = append(st.Resources, providers.Resource{Kind: "backendAddressPool", ID: deref(bp.ID)})
			if bp.Properties != nil {
				st.Backends.Total = len(bp.Properties.LoadBalancerBackendAddresses)
			}
		}
	}
	if p.opts.SecurityGroupName != "" {
		st.Resources = append(st.Resources, providers.Resource{Kind: "securityRule", ID: p.securityRuleID(base)})
	}
	return st, nil
}

// ensurePublicIP returns the Service's public IP, creating it when missing.
func (p *Provider) ensurePublicIP(ctx context.Context, key providers.Key, s Settings) (*armnetwork.PublicIPAddress, error) {
	name := cmpOr(s.PublicIPName, ResourceName(key))
	log := logr.FromContextOrDiscard(ctx).WithValues("publicIPAddress", name)
	resp, err := p.pips.Get(ctx, p.opts.ResourceGroup, name, nil)
	switch {
	case err == nil:
		pip := &resp.PublicIPAddress
		marks := tagMarks(pip.Tags)
		if !owns(marks, key) {
			if s.PublicIPName == "" || marks[providers.TagManagedBy] == providers.ManagedByValue {
				// Portico's default name taken by someone else, or another
				// Service's Portico-made address: never adopt it.
				return nil, &providers.NotOwnedError{Kind: "publicIPAddress", ID: p.publicIPID(name)}
			}
			log.V(1).Info("Using a user-provided public IP as is")
		} else if want := p.publicIPPrefixID(s.PublicIPPrefix); !strings.EqualFold(want, prefixOf(pip)) {
			return nil, providers.Configf("PublicIPPrefixImmutable", "public IP %s was allocated from prefix %q; Azure cannot move it to %q (delete and recreate the Service)", name, prefixOf(pip), want)
		}
		if pip.Properties == nil || deref(pip.Properties.IPAddress) == "" {
			return nil, providers.Retry(fmt.Errorf("public IP %s has no address yet", name), transientWait)
		}
		return pip, nil
	case !isNotFound(err):
		return nil, classify("reading public IP "+name, err)
	}
	log.Info("Creating public IP")
	want := armnetwork.PublicIPAddress{
		Location: ptr(p.opts.Location),
		Tags:     ownershipTags(key),
		SKU: &armnetwork.PublicIPAddressSKU{
			Name: ptr(armnetwork.PublicIPAddressSKUNameStandard),
			Tier: ptr(armnetwork.PublicIPAddressSKUTierRegional),
		},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{
			PublicIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic),
			PublicIPAddressVersion:   ptr(armnetwork.IPVersionIPv4),
		},
	}
	if id := p.publicIPPrefixID(s.PublicIPPrefix); id != "" {
		want.Properties.PublicIPPrefix = &armnetwork.SubResource{ID: ptr(id)}
	}
	hctx := policy.WithHTTPHeader(ctx, map[string][]string{"If-None-Match": {"*"}})
	poller, err := p.pips.BeginCreateOrUpdate(hctx, p.opts.ResourceGroup, name, want, nil)
	if err != nil {
		return nil, classify("creating public IP "+name, err)
	}
	out, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions())
	if err != nil {
		return nil, classify("creating public IP "+name, err)
	}
	if out.Properties == nil || deref(out.Properties.IPAddress) == "" {
		return nil, providers.Retry(fmt.Errorf("public IP %s has no address yet", name), transientWait)
	}
	return &out.PublicIPAddress, nil
}

func (p *Provider) publicIPPrefixID(s string) string {
	if s == "" || strings.HasPrefix(s, "/") {
		return s
	}
	return armID(p.opts.SubscriptionID, p.opts.ResourceGroup, "publicIPPrefixes", s)
}

// allowPrefix refuses a public IP prefix outside the resource groups a
// Service may use: the operator's own (--azure-resource-group) and those in
// --azure-allowed-resource-groups. A prefix given by name is always in the
// operator's own group.
func (p *Provider) allowPrefix(prefix string) error {
	if !strings.HasPrefix(prefix, "/") {
		return nil
	}
	parts := strings.Split(prefix, "/") // "", subscriptions, <sub>, resourceGroups, <rg>, ...
	if len(parts) < 5 {
		return providers.Configf("InvalidAnnotation", "%s: %q is not a resource ID", AnnotationPublicIPPrefix, prefix)
	}
	sub, rg := parts[2], parts[4]
	if p.allowedResourceGroup(sub, rg) {
		return nil
	}
	return providers.Configf(providers.ReasonResourceNotAllowed,
		"%s names a public IP prefix in resource group %s of subscription %s; Services may use only resource group %s and those in --azure-allowed-resource-groups",
		AnnotationPublicIPPrefix, rg, sub, p.opts.ResourceGroup)
}

// allowedResourceGroup reports whether Services may use resources of rg in
// subscription sub. Resource group names and subscription IDs compare
// case-insensitively, as ARM treats them
// (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules).
func (p *Provider) allowedResourceGroup(sub, rg string) bool {
	if strings.EqualFold(sub, p.opts.SubscriptionID) && strings.EqualFold(rg, p.opts.ResourceGroup) {
		return true
	}
	for _, a := range p.opts.AllowedResourceGroups {
		asub, arg := p.opts.SubscriptionID, a
		if strings.HasPrefix(a, "/") {
			f := strings.Split(a, "/")
			if len(f) != 5 {
				continue
			}
			asub, arg = f[2], f[4]
		}
		if strings.EqualFold(sub, asub) && strings.EqualFold(rg, arg) {
			return true
		}
	}
	return false
}

func prefixOf(pip *armnetwork.PublicIPAddress) string {
	if pip.Properties == nil || pip.Properties.PublicIPPrefix == nil {
		return ""
	}
	return deref(pip.Properties.PublicIPPrefix.ID)
}

// deletePublicIP deletes name if it carries key's tags; anything else
// (a user-provided address) is left alone.
func (p *Provider) deletePublicIP(ctx context.Context, key providers.Key, name string) error {
	resp, err := p.pips.Get(ctx, p.opts.ResourceGroup, name, nil)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return classify("reading public IP "+name, err)
	}
	if !owns(tagMarks(resp.Tags), key) {
		return nil
	}
	logr.FromContextOrDiscard(ctx).Info("Deleting public IP", "publicIPAddress", name)
	hctx := policy.WithHTTPHeader(ctx, map[string][]string{"If-Match": {deref(resp.Etag)}})
	poller, err := p.pips.BeginDelete(hctx, p.opts.ResourceGroup, name, nil)
	if err != nil {
		return classify("deleting public IP "+name, err)
	}
	if _, err := poller.PollUntilDone(p.pollContext(ctx), p.pollOptions()); err != nil {
		return classify("deleting public IP "+name, err)
	}
	return nil
}

var nameCharsRE = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// sanitizeName makes s usable in an Azure resource name.
func sanitizeName(s string) string {
	s = strings.Trim(nameCharsRE.ReplaceAllString(s, "-"), "-._")
	if len(s) > 60 {
		s = s[:60]
	}
	return cmpOr(s, "cluster")
}

func nameFromID(id string) string { return id[strings.LastIndex(id, "/")+1:] }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func toPtrMap(m map[string]string) map[string]*string {
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = ptr(v)
	}
	return out
}
