package dataplane

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// Names of the objects shared by all Services. The per-family maps carry a
// -v4 or -v6 suffix.
const (
	chainFilterPrerouting = "filter-prerouting"
	chainFilterInput      = "filter-input"
	chainFilterOutput     = "filter-output"
	chainNoEndpoints      = "no-endpoints"
	chainNodePortNoEps    = "nodeport-no-endpoints"
	chainReject           = "reject-chain"
	chainNATPrerouting    = "nat-prerouting"
	chainNATOutput        = "nat-output"
	chainNATPostrouting   = "nat-postrouting"
	chainServices         = "services"
	chainMarkMasq         = "mark-for-masquerade"
	chainMasquerading     = "masquerading"

	mapLBIPs             = "lb-ips"
	mapLBFirewall        = "lb-firewall"
	mapLBNoEndpoints     = "lb-no-endpoints"
	mapNodePorts         = "nodeports"
	mapNodePortNoEps     = "nodeport-no-endpoints"
	mapLBEndpoints       = "lb-endpoints"
	mapNodePortEndpoints = "nodeport-endpoints"
	setHairpin           = "hairpin"
	setNodePortIPs       = "nodeport-ips"
	defaultTable         = "portico"
	defaultMasqueradeM   = 0x4000
)

// Priorities: the filter chain runs before any DNAT; the NAT chains run 5
// before the standard dstnat/srcnat priorities that kube-proxy uses, so for
// an address both program, Portico's DNAT is the one conntrack records.
const (
	prioFilterPrerouting = knftables.DNATPriority + "-10"
	prioDNAT             = knftables.DNATPriority + "-5"
	prioSNAT             = knftables.SNATPriority + "-5"
)

// family is one IP family of the inet table.
type family struct {
	v6      bool
	ip      string // "ip" or "ip6": the payload keyword
	addr    string // "ipv4_addr" or "ipv6_addr"
	suffix  string // "-v4" or "-v6"
	nfproto string
}

var families = []family{
	{v6: false, ip: "ip", addr: "ipv4_addr", suffix: "-v4", nfproto: "ipv4"},
	{v6: true, ip: "ip6", addr: "ipv6_addr", suffix: "-v6", nfproto: "ipv6"},
}

// objects is everything one Service owns in the table: its chains with
// their rules, its affinity sets, and its elements in the shared maps.
type objects struct {
	chains   map[string][]string
	sets     map[string]setSpec
	elements map[elemKey]string
	// dispatch are the shared dispatch chains the Service uses; they are
	// created on first use and outlive the Service until the next Sync.
	dispatch map[string]dispatchSpec
}

type setSpec struct {
	addrType string
	timeout  time.Duration
}

type elemKey struct {
	mapName string
	key     string // parts joined by " . "
}

func newObjects() *objects {
	return &objects{chains: map[string][]string{}, sets: map[string]setSpec{}, elements: map[elemKey]string{}, dispatch: map[string]dispatchSpec{}}
}

// generator turns Services into nftables objects; it holds the options
// rules depend on.
type generator struct {
	nodeName      string
	kubeProxyFree bool
	nodeIPs       []netip.Addr
	mark          string
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5]))
}

// portID names a Service port in chain names: namespace/name/proto/port.
func portID(key ServiceKey, p *Port, fam family) string {
	id := fmt.Sprintf("%s/%s/%s/%d", key.Namespace, key.Name, p.Protocol, p.Port)
	if fam.v6 {
		id += "/v6"
	}
	return id
}

func svcChainName(key ServiceKey, p *Port, fam family) string {
	return "svc-" + portID(key, p, fam)
}

// epID is the readable endpoint part of a name; ':' is not allowed in nft
// identifiers, so IPv6 colons become dots (the hash keeps names unique).
func epID(key ServiceKey, p *Port, fam family, ep Endpoint) string {
	return portID(key, p, fam) + "__" + strings.ReplaceAll(ep.Addr.String(), ":", ".") + "/" + strconv.Itoa(int(ep.Port))
}

// affinitySetName includes the timeout, so a changed timeout makes a new set
// (nftables cannot change the timeout of an existing set).
func affinitySetName(key ServiceKey, p *Port, fam family, ep Endpoint, timeout time.Duration) string {
	id := epID(key, p, fam, ep)
	return "aff-" + shortHash(fmt.Sprintf("%s%s%d", id, ep.Addr, timeout/time.Second)) + "-" + id
}

func fwChainName(key ServiceKey, fam family) string {
	id := "fw-" + key.Namespace + "/" + key.Name
	if fam.v6 {
		id += "/v6"
	}
	return id
}

func validProtocol(p Protocol) bool { return p == TCP || p == UDP || p == SCTP }

func endpointAddr(ep Endpoint) string {
	if ep.Addr.Is6() {
		return "[" + ep.Addr.String() + "]:" + strconv.Itoa(int(ep.Port))
	}
	return ep.Addr.String() + ":" + strconv.Itoa(int(ep.Port))
}

// serviceObjects is the pure function at the heart of the package: the
// objects one Service needs.
func (g *generator) serviceObjects(svc *Service) (*objects, error) {
	o := newObjects()
	for i := range svc.Ports {
		if !validProtocol(svc.Ports[i].Protocol) {
			return nil, fmt.Errorf("service %s port %d: unsupported protocol %q", svc.Key, svc.Ports[i].Port, svc.Ports[i].Protocol)
		}
	}
	for _, fam := range families {
		var lbIPs []netip.Addr
		for _, ip := range svc.LoadBalancerIPs {
			if ip.Is6() == fam.v6 && !ip.Is4In6() {
				lbIPs = append(lbIPs, ip)
			}
		}
		slices.SortFunc(lbIPs, netip.Addr.Compare)
		lbIPs = slices.Compact(lbIPs)

		if len(lbIPs) > 0 && len(svc.SourceRanges) > 0 {
			fw := fwChainName(svc.Key, fam)
			o.chains[fw] = []string{g.firewallRule(svc, fam)}
			for _, ip := range lbIPs {
				for _, p := range svc.Ports {
					o.elements[elemKey{mapLBFirewall + fam.suffix, join(ip.String(), string(p.Protocol), strconv.Itoa(int(p.Port)))}] = "goto " + fw
				}
			}
		}

		for i := range svc.Ports {
			p := &svc.Ports[i]
			eps := svc.usable(p, g.nodeName, fam.v6)
			nodePort := g.kubeProxyFree && p.NodePort != 0 && (len(lbIPs) > 0 || hasFamily(p.Endpoints, fam.v6))
			if len(lbIPs) == 0 && !nodePort {
				continue
			}
			lbTarget, npTarget := "goto "+chainReject, "goto "+chainReject
			switch {
			case len(eps) == 0:
			case svc.AffinityTimeout > 0:
				// Affinity needs per-endpoint sets, so a chain of its own.
				svcChain := svcChainName(svc.Key, p, fam)
				lbTarget, npTarget = "goto "+svcChain, "goto "+svcChain
				g.dispatch(o, svc, p, fam, eps, svcChain)
			default:
				lbTarget, npTarget = g.sharedDispatch(o, svc, p, fam, eps, lbIPs, nodePort)
			}
			for _, ip := range lbIPs {
				k := join(ip.String(), string(p.Protocol), strconv.Itoa(int(p.Port)))
				if len(eps) > 0 {
					o.elements[elemKey{mapLBIPs + fam.suffix, k}] = lbTarget
				} else {
					o.elements[elemKey{mapLBNoEndpoints + fam.suffix, k}] = lbTarget
				}
			}
			if nodePort {
				k := join(string(p.Protocol), strconv.Itoa(int(p.NodePort)))
				if len(eps) > 0 {
					o.elements[elemKey{mapNodePorts + fam.suffix, k}] = npTarget
				} else {
					o.elements[elemKey{mapNodePortNoEps + fam.suffix, k}] = npTarget
				}
			}
		}
	}
	return o, nil
}

func hasFamily(eps []Endpoint, v6 bool) bool {
	for _, ep := range eps {
		if ep.Addr.Is6() == v6 {
			return true
		}
	}
	return false
}

func join(parts ...string) string { return strings.Join(parts, " . ") }

// firewallRule drops clients outside the Service's source ranges of this
// family; with no range of the family, it drops the family entirely (as
// kube-proxy does).
func (g *generator) firewallRule(svc *Service, fam family) string {
	var cidrs []string
	for _, r := range svc.SourceRanges {
		if r.Addr().Is6() == fam.v6 {
			cidrs = append(cidrs, r.Masked().String())
		}
	}
	slices.Sort(cidrs)
	cidrs = slices.Compact(cidrs)
	if len(cidrs) == 0 {
		return "drop"
	}
	return fmt.Sprintf("%s saddr != { %s } drop", fam.ip, strings.Join(cidrs, ", "))
}

// dispatchSpec describes a shared dispatch chain: it DNATs to one of n
// endpoints looked up in a map by the packet's address, protocol and port
// (or protocol and NodePort) and a random number below n.
type dispatchSpec struct {
	n        int
	fam      family
	masq     bool
	nodePort bool
}

func (d dispatchSpec) name() string {
	name := "dispatch"
	if d.nodePort {
		name = "np-dispatch"
	}
	if d.masq {
		name += "-masq"
	}
	return fmt.Sprintf("%s-%d%s", name, d.n, d.fam.suffix)
}

// rules of the chain; a masquerading chain marks and continues in the
// plain one, which must exist too (see needs).
func (d dispatchSpec) rules() []string {
	if d.masq {
		plain := d
		plain.masq = false
		return []string{"jump " + chainMarkMasq, "goto " + plain.name()}
	}
	// One endpoint map per protocol: nft 1.0.6 refuses a rule whose map
	// (read back from the kernel) has "th dport" in its key after a
	// "meta l4proto tcp" match, so the keys say "tcp dport" etc.
	var out []string
	for _, proto := range []Protocol{TCP, UDP, SCTP} {
		key, m := fmt.Sprintf("%s daddr . %s dport", d.fam.ip, proto), endpointMap(mapLBEndpoints, proto, d.fam)
		if d.nodePort {
			key, m = fmt.Sprintf("%s dport", proto), endpointMap(mapNodePortEndpoints, proto, d.fam)
		}
		out = append(out, fmt.Sprintf("meta l4proto %s dnat %s addr . port to %s . numgen random mod %d map @%s", proto, d.fam.ip, key, d.n, m))
	}
	return out
}

func endpointMap(prefix string, proto Protocol, fam family) string {
	return prefix + "-" + string(proto) + fam.suffix
}

func (d dispatchSpec) needs() []dispatchSpec {
	if !d.masq {
		return []dispatchSpec{d}
	}
	plain := d
	plain.masq = false
	return []dispatchSpec{plain, d}
}

// sharedDispatch programs a Service port without affinity as map elements
// only: the endpoints go into the endpoint maps, indexed 0..n-1, and the
// address points at the shared dispatch chain for n endpoints. An update
// of such a Service changes elements, never chains.
func (g *generator) sharedDispatch(o *objects, svc *Service, p *Port, fam family, eps []Endpoint, lbIPs []netip.Addr, nodePort bool) (lbTarget, npTarget string) {
	eps = sortEndpoints(eps)
	masq := svc.TrafficPolicy != Local
	value := func(ep Endpoint) string { return join(ep.Addr.String(), strconv.Itoa(int(ep.Port))) }
	lb := dispatchSpec{n: len(eps), fam: fam, masq: masq}
	for _, d := range lb.needs() {
		o.dispatch[d.name()] = d
	}
	lbTarget = "goto " + lb.name()
	for _, ip := range lbIPs {
		for i, ep := range eps {
			o.elements[elemKey{endpointMap(mapLBEndpoints, p.Protocol, fam), join(ip.String(), strconv.Itoa(int(p.Port)), strconv.Itoa(i))}] = value(ep)
		}
	}
	if nodePort {
		np := dispatchSpec{n: len(eps), fam: fam, masq: masq, nodePort: true}
		for _, d := range np.needs() {
			o.dispatch[d.name()] = d
		}
		npTarget = "goto " + np.name()
		for i, ep := range eps {
			o.elements[elemKey{endpointMap(mapNodePortEndpoints, p.Protocol, fam), join(strconv.Itoa(int(p.NodePort)), strconv.Itoa(i))}] = value(ep)
		}
	}
	if !masq {
		// Hairpin: an endpoint reaching itself through the address is
		// masqueraded in postrouting, or its reply would skip the reverse
		// NAT. (Under Cluster every connection is masqueraded anyway.)
		for _, ep := range eps {
			o.elements[elemKey{setHairpin + fam.suffix, join(ep.Addr.String(), ep.Addr.String())}] = ""
		}
	}
	return lbTarget, npTarget
}

func sortEndpoints(eps []Endpoint) []Endpoint {
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b Endpoint) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.Addr == b.Addr && a.Port == b.Port })
}

// dispatch writes the chain of a Service port with ClientIP affinity: the
// masquerade mark, affinity lookups, then a cascade of random choices, each
// ending in a DNAT. There are no per-endpoint chains and no anonymous sets:
// the nft command reads every chain of the ruleset before each transaction,
// and the kernel names anonymous sets by a scan of the table, so both would
// make a single update slower as the table grows (docs/dataplane.md).
func (g *generator) dispatch(o *objects, svc *Service, p *Port, fam family, eps []Endpoint, svcChain string) {
	eps = sortEndpoints(eps)
	var rules []string
	if svc.TrafficPolicy != Local {
		rules = append(rules, "jump "+chainMarkMasq)
	} else {
		// Hairpin: an endpoint reaching itself through the address must be
		// masqueraded, or its reply would skip the reverse NAT. (Under
		// Cluster every connection is masqueraded anyway.)
		for _, ep := range eps {
			rules = append(rules, fmt.Sprintf("%s saddr %s jump %s", fam.ip, ep.Addr, chainMarkMasq))
		}
	}
	dnat := make([]string, len(eps))
	for i, ep := range eps {
		dnat[i] = fmt.Sprintf("meta l4proto %s dnat %s to %s", p.Protocol, fam.ip, endpointAddr(ep))
		if svc.AffinityTimeout > 0 {
			set := affinitySetName(svc.Key, p, fam, ep, svc.AffinityTimeout)
			o.sets[set] = setSpec{addrType: fam.addr, timeout: svc.AffinityTimeout}
			// Every new connection refreshes the client's entry.
			dnat[i] = fmt.Sprintf("update @%s { %s saddr } %s", set, fam.ip, dnat[i])
			rules = append(rules, fmt.Sprintf("%s saddr @%s %s", fam.ip, set, dnat[i]))
		}
	}
	// Endpoint i of n is taken with probability 1/(n-i) when the earlier
	// ones were not: 1/n each overall.
	for i := range eps {
		if rest := len(eps) - i; rest > 1 {
			rules = append(rules, fmt.Sprintf("numgen random mod %d == 0 %s", rest, dnat[i]))
		} else {
			rules = append(rules, dnat[i])
		}
	}
	o.chains[svcChain] = rules
}

// base is the skeleton every Service hangs off: hooks, shared maps and
// helper chains.
type base struct {
	chains []*knftables.Chain
	rules  map[string][]string
	maps   []*knftables.Map
	sets   []*knftables.Set
	elems  []*knftables.Element
}

func ptr[T any](v T) *T { return &v }

func (g *generator) base() *base {
	b := &base{rules: map[string][]string{}}
	baseChain := func(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority) {
		b.chains = append(b.chains, &knftables.Chain{Name: name, Type: ptr(typ), Hook: ptr(hook), Priority: ptr(prio)})
	}
	baseChain(chainFilterPrerouting, knftables.FilterType, knftables.PreroutingHook, prioFilterPrerouting)
	baseChain(chainFilterOutput, knftables.FilterType, knftables.OutputHook, knftables.FilterPriority)
	baseChain(chainNATPrerouting, knftables.NATType, knftables.PreroutingHook, prioDNAT)
	baseChain(chainNATOutput, knftables.NATType, knftables.OutputHook, prioDNAT)
	baseChain(chainNATPostrouting, knftables.NATType, knftables.PostroutingHook, prioSNAT)
	for _, name := range []string{chainNoEndpoints, chainReject, chainServices, chainMarkMasq, chainMasquerading} {
		b.chains = append(b.chains, &knftables.Chain{Name: name})
	}
	if g.kubeProxyFree {
		baseChain(chainFilterInput, knftables.FilterType, knftables.InputHook, knftables.FilterPriority)
		b.chains = append(b.chains, &knftables.Chain{Name: chainNodePortNoEps})
	}

	vmap := func(f family) string { return f.ip + " daddr . meta l4proto . th dport vmap @" }
	for _, f := range families {
		b.rules[chainFilterPrerouting] = append(b.rules[chainFilterPrerouting], vmap(f)+mapLBFirewall+f.suffix)
		b.rules[chainNoEndpoints] = append(b.rules[chainNoEndpoints], vmap(f)+mapLBNoEndpoints+f.suffix)
		b.rules[chainServices] = append(b.rules[chainServices], vmap(f)+mapLBIPs+f.suffix)
		for _, m := range []string{mapLBIPs, mapLBFirewall, mapLBNoEndpoints} {
			b.maps = append(b.maps, &knftables.Map{Name: m + f.suffix, Type: f.addr + " . inet_proto . inet_service : verdict"})
		}
		for _, proto := range []Protocol{TCP, UDP, SCTP} {
			b.maps = append(b.maps, &knftables.Map{Name: endpointMap(mapLBEndpoints, proto, f),
				TypeOf: fmt.Sprintf("%s daddr . %s dport . numgen random mod 2 : %s daddr . %s dport", f.ip, proto, f.ip, proto)})
		}
		b.sets = append(b.sets, &knftables.Set{Name: setHairpin + f.suffix, TypeOf: fmt.Sprintf("%s saddr . %s daddr", f.ip, f.ip)})
		b.rules[chainMasquerading] = append(b.rules[chainMasquerading], fmt.Sprintf("ct status dnat %s saddr . %s daddr @%s masquerade fully-random", f.ip, f.ip, setHairpin+f.suffix))
	}
	// Packets to a Service port without endpoints are rejected in
	// prerouting, before routing could answer "unreachable" for an address
	// the node has no route to; local senders are caught in output.
	b.rules[chainFilterPrerouting] = append(b.rules[chainFilterPrerouting], "ct state new jump "+chainNoEndpoints)
	b.rules[chainFilterOutput] = []string{"ct state new jump " + chainNoEndpoints}
	b.rules[chainReject] = []string{"meta l4proto tcp reject with tcp reset", "reject with icmpx port-unreachable"}
	b.rules[chainNATPrerouting] = []string{"jump " + chainServices}
	b.rules[chainNATOutput] = []string{"jump " + chainServices}
	b.rules[chainNATPostrouting] = []string{"jump " + chainMasquerading}
	b.rules[chainMarkMasq] = []string{"meta mark set meta mark | " + g.mark}
	b.rules[chainMasquerading] = append(b.rules[chainMasquerading],
		fmt.Sprintf("meta mark & %s == 0 return", g.mark),
		fmt.Sprintf("meta mark set meta mark ^ %s", g.mark),
		"masquerade fully-random",
	)

	if g.kubeProxyFree {
		b.rules[chainFilterInput] = append(b.rules[chainFilterInput], "ct state new jump "+chainNodePortNoEps)
		for _, f := range families {
			for _, m := range []string{mapNodePorts, mapNodePortNoEps} {
				b.maps = append(b.maps, &knftables.Map{Name: m + f.suffix, Type: "inet_proto . inet_service : verdict"})
			}
			for _, proto := range []Protocol{TCP, UDP, SCTP} {
				b.maps = append(b.maps, &knftables.Map{Name: endpointMap(mapNodePortEndpoints, proto, f),
					TypeOf: fmt.Sprintf("%s dport . numgen random mod 2 : %s daddr . %s dport", proto, f.ip, proto)})
			}
			var ips []netip.Addr
			for _, ip := range g.nodeIPs {
				if ip.Is6() == f.v6 {
					ips = append(ips, ip)
				}
			}
			// NodePorts answer on the node's own addresses: the listed
			// NodeIPs, or with none listed, any local address but loopback.
			match := fmt.Sprintf("fib daddr type local %s daddr != %s", f.ip, map[bool]string{false: "127.0.0.0/8", true: "::1"}[f.v6])
			if len(g.nodeIPs) > 0 {
				set := setNodePortIPs + f.suffix
				b.sets = append(b.sets, &knftables.Set{Name: set, Type: f.addr})
				for _, ip := range ips {
					b.elems = append(b.elems, &knftables.Element{Set: set, Key: []string{ip.String()}})
				}
				match = fmt.Sprintf("%s daddr @%s", f.ip, set)
			}
			b.rules[chainServices] = append(b.rules[chainServices],
				fmt.Sprintf("%s meta l4proto . th dport vmap @%s", match, mapNodePorts+f.suffix))
			b.rules[chainNodePortNoEps] = append(b.rules[chainNodePortNoEps],
				fmt.Sprintf("%s meta l4proto . th dport vmap @%s", match, mapNodePortNoEps+f.suffix))
		}
	}
	return b
}

// addBase writes the skeleton into tx: everything is added (a no-op when it
// exists), its chains and maps flushed and refilled. Affinity sets and
// per-Service chains are left to the caller.
func (b *base) add(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{Comment: ptr("Portico load-balancer data plane")})
	for _, s := range b.sets {
		tx.Add(s)
		tx.Flush(s)
	}
	for _, e := range b.elems {
		tx.Add(e)
	}
	for _, m := range b.maps {
		tx.Add(m)
		tx.Flush(m)
	}
	for _, c := range b.chains {
		tx.Add(c)
		tx.Flush(c)
	}
}

func (b *base) addRules(tx *knftables.Transaction) {
	for _, c := range b.chains {
		for _, r := range b.rules[c.Name] {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
	}
}

func (b *base) names() (chains, sets, mapNames map[string]bool) {
	chains, sets, mapNames = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, c := range b.chains {
		chains[c.Name] = true
	}
	for _, s := range b.sets {
		sets[s.Name] = true
	}
	for _, m := range b.maps {
		mapNames[m.Name] = true
	}
	return chains, sets, mapNames
}

func affinitySet(name string, spec setSpec) *knftables.Set {
	return &knftables.Set{
		Name:    name,
		Type:    spec.addrType,
		Flags:   []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag},
		Timeout: ptr(spec.timeout),
	}
}

func element(k elemKey, value string) *knftables.Element {
	if strings.HasPrefix(k.mapName, setHairpin) {
		return &knftables.Element{Set: k.mapName, Key: strings.Split(k.key, " . ")}
	}
	return &knftables.Element{Map: k.mapName, Key: strings.Split(k.key, " . "), Value: []string{value}}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func sortedElems(m map[elemKey]string) []elemKey {
	return slices.SortedFunc(maps.Keys(m), func(a, b elemKey) int {
		if c := strings.Compare(a.mapName, b.mapName); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
}

// writeDiff writes into tx what turns old (nil: nothing) into new (nil:
// nothing) for one Service, in an order nftables accepts: references are
// removed before what they point to, and targets exist before references.
// The map elements are given separately as before/after values of the
// keys the Service touches, since two Services may claim one key.
func writeDiff(tx *knftables.Transaction, old, new *objects, before, after map[elemKey]string) {
	if old == nil {
		old = newObjects()
	}
	if new == nil {
		new = newObjects()
	}
	// 1. Elements that go away or change.
	for _, k := range sortedElems(before) {
		if v, ok := after[k]; !ok || v != before[k] {
			tx.Delete(element(k, ""))
		}
	}
	// 2. Chains whose rules change, and chains that go away, are emptied.
	var changed, stale []string
	for _, name := range sortedKeys(old.chains) {
		rules, ok := new.chains[name]
		switch {
		case !ok:
			stale = append(stale, name)
			tx.Flush(&knftables.Chain{Name: name})
		case !slices.Equal(rules, old.chains[name]):
			changed = append(changed, name)
			tx.Flush(&knftables.Chain{Name: name})
		}
	}
	// 3. Stale chains and sets, now unreferenced, are deleted.
	for _, name := range stale {
		tx.Delete(&knftables.Chain{Name: name})
	}
	for _, name := range sortedKeys(old.sets) {
		if _, ok := new.sets[name]; !ok {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
	// 4. New sets and chains are created, then rules written.
	for _, name := range sortedKeys(new.sets) {
		if _, ok := old.sets[name]; !ok {
			tx.Add(affinitySet(name, new.sets[name]))
		}
	}
	for _, name := range sortedKeys(new.chains) {
		if _, ok := old.chains[name]; !ok {
			changed = append(changed, name)
			tx.Add(&knftables.Chain{Name: name})
		}
	}
	slices.Sort(changed)
	for _, name := range changed {
		for _, r := range new.chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	// 5. Elements that are new or changed.
	for _, k := range sortedElems(after) {
		if v, ok := before[k]; !ok || v != after[k] {
			tx.Add(element(k, after[k]))
		}
	}
}

// claims records which Services want which map element (the same
// address, protocol and port can be claimed by two Services by mistake).
// The Service with the lowest key wins, whatever the order of events, so
// incremental updates and a full sync agree.
type claims map[elemKey]map[ServiceKey]string

func lessKey(a, b ServiceKey) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func (c claims) winner(k elemKey) (ServiceKey, string, bool) {
	var best ServiceKey
	var val string
	found := false
	for sk, v := range c[k] {
		if !found || lessKey(sk, best) {
			best, val, found = sk, v, true
		}
	}
	return best, val, found
}

// set replaces the claims of key by o's elements (o nil: none) and
// returns the winning values of the affected element keys before and
// after, and the keys key wanted but lost to another Service.
func (c claims) set(key ServiceKey, old, o *objects) (before, after map[elemKey]string, lost []elemKey) {
	before, after = map[elemKey]string{}, map[elemKey]string{}
	affected := map[elemKey]bool{}
	if old != nil {
		for k := range old.elements {
			affected[k] = true
		}
	}
	if o != nil {
		for k := range o.elements {
			affected[k] = true
		}
	}
	for k := range affected {
		if _, v, ok := c.winner(k); ok {
			before[k] = v
		}
		delete(c[k], key)
		if o != nil {
			if v, ok := o.elements[k]; ok {
				if c[k] == nil {
					c[k] = map[ServiceKey]string{}
				}
				c[k][key] = v
			}
		}
		if len(c[k]) == 0 {
			delete(c, k)
		}
		if w, v, ok := c.winner(k); ok {
			after[k] = v
			if w != key && o != nil && o.elements[k] != "" {
				lost = append(lost, k)
			}
		}
	}
	return before, after, lost
}

func (c claims) clone(keys map[elemKey]bool) claims {
	out := claims{}
	for k := range keys {
		if m, ok := c[k]; ok {
			out[k] = maps.Clone(m)
		}
	}
	return out
}
