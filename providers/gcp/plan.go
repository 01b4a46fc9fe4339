package gcp

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/portico-lb/portico/providers"
)

// maxRulePorts is how many ports one forwarding rule may list.
const maxRulePorts = 5

// plan is what one Service needs, derived from the desired state alone.
type plan struct {
	key      providers.Key
	internal bool
	// addressName is a user-reserved address to use; ephemeral asks for
	// an ephemeral address. Neither: Portico reserves its own.
	addressName string
	ephemeral   bool
	// requestedIP is lb.portico.dev/ip (the first IPv4 one).
	requestedIP string
	tier        string
	subnet      string
	// ports per protocol, sorted and unique.
	ports map[providers.Protocol][]int32
	// protocols used, sorted (TCP before UDP).
	protocols []providers.Protocol
	hcPort    int32
	// zones maps a zone to the instance links of the eligible nodes there.
	zones map[string][]string
	// exactMembers: the nodes are the cluster's whole eligible set
	// (externalTrafficPolicy Cluster), so instance groups shrink to them;
	// with Local they are narrowed, and groups only grow.
	exactMembers bool
	affinity     string
	sourceRanges []string
	// restricted is true when the Service set loadBalancerSourceRanges, so
	// everyone else is denied explicitly.
	restricted bool
	nodes      int
}

// newPlan validates desired and derives the plan; problems the user must fix
// come back as *providers.ConfigError.
func (p *Provider) newPlan(d *providers.LoadBalancer) (*plan, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	ann, err := ParseAnnotations(d.Annotations)
	if err != nil {
		return nil, err
	}
	pl := &plan{
		key:          d.Key,
		internal:     d.Scheme == providers.SchemeInternal,
		addressName:  ann.AddressName,
		ephemeral:    ann.AddressType == AddressEphemeral,
		tier:         p.opts.NetworkTier,
		ports:        map[providers.Protocol][]int32{},
		zones:        map[string][]string{},
		exactMembers: d.TrafficPolicy != providers.TrafficPolicyLocal,
		affinity:     "NONE",
	}
	if len(d.IPFamilies) > 0 && d.IPFamilies[0] == "IPv6" && !d.DualStack {
		return nil, providers.Configf("IPv6Unsupported", "the gcp backend builds IPv4 load balancers; this Service is IPv6 single-stack")
	}
	for _, ip := range d.RequestedIPs {
		if !ip.Is4() {
			// Never drop half of the request silently.
			return nil, providers.Configf("IPv6Unsupported", "lb.portico.dev/ip asks for %s; the gcp backend builds IPv4 load balancers and cannot give a Service an IPv6 address", ip)
		}
		pl.requestedIP = ip.String()
	}
	if d.SharingKey != "" {
		return nil, providers.Configf("SharingUnsupported", "lb.portico.dev/allow-shared-ip is not supported by the gcp backend: every Service gets its own address (share one by reserving it and naming it in %s on one Service only)", AnnotationAddressName)
	}
	if pl.requestedIP != "" && (pl.addressName != "" || pl.ephemeral) {
		return nil, providers.Configf("InvalidAnnotation", "lb.portico.dev/ip cannot be combined with %s or %s=%s", AnnotationAddressName, AnnotationAddressType, AddressEphemeral)
	}
	if ann.NetworkTier != "" {
		if pl.internal {
			return nil, providers.Configf("InvalidAnnotation", "%s applies to external load balancers only", AnnotationNetworkTier)
		}
		pl.tier = ann.NetworkTier
	}
	if pl.internal {
		pl.tier = ""
		pl.subnet = p.opts.Subnetwork
		if ann.Subnet != "" {
			pl.subnet = ann.Subnet
			if !strings.Contains(pl.subnet, "/") {
				pl.subnet = "projects/" + p.networkProject() + "/regions/" + p.opts.Region + "/subnetworks/" + pl.subnet
			}
			if err := p.allowProject(pl.subnet); err != nil {
				return nil, err
			}
		}
		if pl.subnet == "" {
			return nil, providers.Configf("SubnetRequired", "an internal load balancer needs a subnetwork: set %s or the operator's --gcp-subnetwork", AnnotationSubnet)
		}
	} else if ann.Subnet != "" {
		return nil, providers.Configf("InvalidAnnotation", "%s applies to internal load balancers only (lb.portico.dev/scheme: internal)", AnnotationSubnet)
	}

	for _, port := range d.Ports {
		switch port.Protocol {
		case providers.TCP, providers.UDP:
		default:
			return nil, providers.Configf("UnsupportedProtocol", "port %d: protocol %s is not supported by the gcp backend (TCP and UDP are)", port.Port, port.Protocol)
		}
		if port.Port < 1 || port.Port > 65535 {
			return nil, providers.Configf("InvalidPort", "port %d is out of range", port.Port)
		}
		pl.ports[port.Protocol] = append(pl.ports[port.Protocol], port.Port)
	}
	for proto, ports := range pl.ports {
		slices.Sort(ports)
		pl.ports[proto] = slices.Compact(ports)
		pl.protocols = append(pl.protocols, proto)
	}
	slices.Sort(pl.protocols)
	if pl.ephemeral && len(pl.protocols) > 1 {
		return nil, providers.Configf("EphemeralAddressShared", "%s=%s cannot serve TCP and UDP together: two forwarding rules share an address only when it is reserved", AnnotationAddressType, AddressEphemeral)
	}

	pl.hcPort = p.opts.ClusterHealthCheckPort
	if d.TrafficPolicy == providers.TrafficPolicyLocal && d.HealthCheckNodePort > 0 {
		pl.hcPort = d.HealthCheckNodePort
	}
	if d.SessionAffinityTimeout > 0 {
		pl.affinity = "CLIENT_IP"
	}
	for _, r := range d.SourceRanges {
		if r.Addr().Is4() {
			pl.sourceRanges = append(pl.sourceRanges, r.Masked().String())
		}
	}
	if len(d.SourceRanges) > 0 && len(pl.sourceRanges) == 0 {
		return nil, providers.Configf("InvalidSourceRanges", "loadBalancerSourceRanges holds only IPv6 ranges; the gcp backend builds IPv4 load balancers")
	}
	pl.restricted = len(pl.sourceRanges) > 0
	if len(pl.sourceRanges) == 0 {
		pl.sourceRanges = []string{"0.0.0.0/0"}
	}
	sort.Strings(pl.sourceRanges)
	pl.sourceRanges = slices.Compact(pl.sourceRanges)

	for _, n := range d.Nodes {
		project, zone, instance, ok := ParseProviderID(n.ProviderID)
		if !ok || RegionOf(zone) != p.opts.Region {
			// Not a GCE instance of this region: a regional load balancer
			// cannot reach it.
			continue
		}
		pl.zones[zone] = append(pl.zones[zone], "projects/"+project+"/zones/"+zone+"/instances/"+instance)
		pl.nodes++
	}
	for z := range pl.zones {
		slices.Sort(pl.zones[z])
		pl.zones[z] = slices.Compact(pl.zones[z])
	}
	return pl, nil
}

// ParseProviderID splits a node's spec.providerID, gce://<project>/<zone>/<instance>.
func ParseProviderID(id string) (project, zone, instance string, ok bool) {
	rest, found := strings.CutPrefix(id, "gce://")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// rulePorts is how a forwarding rule carries ports: a list of at most five,
// else (external) the range from the lowest to the highest port, else
// (internal, which has no ranges) all ports. The firewall rule still admits
// only the Service's ports, so the wider rule exposes nothing more.
func rulePorts(ports []int32, internal bool) (list []string, portRange string, all bool) {
	if len(ports) <= maxRulePorts {
		for _, p := range ports {
			list = append(list, strconv.Itoa(int(p)))
		}
		return list, "", false
	}
	if internal {
		return nil, "", true
	}
	return nil, fmt.Sprintf("%d-%d", ports[0], ports[len(ports)-1]), false
}

// portList renders ports for descriptions and firewall rules.
func portList(ports []int32) []string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		out = append(out, strconv.Itoa(int(p)))
	}
	return out
}

// parsePortList reverses portList over a comma-joined string.
func parsePortList(s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil && n > 0 && n < 65536 {
			out = append(out, int32(n))
		}
	}
	return out
}

// relLink reduces a self link or partial URL to "projects/...".
func relLink(link string) string {
	if i := strings.Index(link, "projects/"); i >= 0 {
		return link[i:]
	}
	return link
}

func validIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

// parseAddr parses an address the API returned; an unparsable one yields the
// zero Addr.
func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// allowProject refuses a subnetwork named by annotation in a project the
// operator does not allow Services to use: its own (--gcp-project) and those
// in --gcp-allowed-projects (a Shared VPC host project, for instance).
func (p *Provider) allowProject(subnet string) error {
	project, _, _ := strings.Cut(strings.TrimPrefix(subnet, "projects/"), "/")
	if project == p.opts.Project || project == p.opts.NetworkProject || slices.Contains(p.opts.AllowedProjects, project) {
		return nil
	}
	return providers.Configf(providers.ReasonResourceNotAllowed,
		"%s names subnetwork %s in project %s; Services may use only project %s and those in --gcp-allowed-projects", AnnotationSubnet, subnet, project, p.opts.Project)
}
