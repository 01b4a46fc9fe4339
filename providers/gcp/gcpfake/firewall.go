package gcpfake

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Packet is one ingress flow to evaluate against the project's firewall
// rules.
type Packet struct {
	Source, Destination netip.Addr
	Protocol            string // "tcp" or "udp"
	Port                int32
	// TargetTags are the network tags of the receiving instance.
	TargetTags []string
}

// EvaluateIngress returns whether the project's firewall rules admit pkt and
// the deciding rule's name ("" for the implied deny). Of the ingress rules
// that apply to the target and match the flow, the one with the lowest
// priority number decides; at equal priority a deny rule wins over an allow
// rule; with none, the implied ingress deny (priority 65535) applies
// (https://cloud.google.com/firewall/docs/firewalls#priority_order_for_firewall_rules,
// https://cloud.google.com/firewall/docs/firewalls#default_firewall_rules).
// Network scoping is not modeled: the fake serves one network's rules.
func (s *Server) EvaluateIngress(pkt Packet) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, bestPrio, allow := "", int64(math.MaxInt64), false
	rules := map[string]*entry{}
	for _, c := range []string{"global/firewalls", "projects/" + s.opts.HostProject + "/global/firewalls"} {
		for name, e := range s.colls[c] {
			rules[name] = e
		}
	}
	for name, e := range rules {
		if e.pendingCreate || !firewallApplies(e.obj, pkt) {
			continue
		}
		prio := int64(1000)
		if v, ok := number(e.obj["priority"]); ok {
			prio = v
		}
		deny := len(list(e.obj["denied"])) > 0
		if prio < bestPrio || prio == bestPrio && deny && allow {
			best, bestPrio, allow = name, prio, !deny
		}
	}
	return allow, best
}

func firewallApplies(fw Object, pkt Packet) bool {
	if d, _ := fw["direction"].(string); d != "" && d != "INGRESS" {
		return false
	}
	if tags := strs(fw["targetTags"]); len(tags) > 0 && !anyOf(tags, pkt.TargetTags) {
		return false
	}
	if !inRanges(strs(fw["sourceRanges"]), pkt.Source, false) || !inRanges(strs(fw["destinationRanges"]), pkt.Destination, true) {
		return false
	}
	rules := list(fw["allowed"])
	if len(rules) == 0 {
		rules = list(fw["denied"])
	}
	for _, r := range rules {
		p, _ := r["IPProtocol"].(string)
		if p == "" {
			p, _ = r["ipProtocol"].(string)
		}
		if p != "all" && !strings.EqualFold(p, pkt.Protocol) {
			continue
		}
		ports := strs(r["ports"])
		if len(ports) == 0 || p == "all" {
			return true
		}
		for _, pr := range ports {
			lo, hi, isRange := strings.Cut(pr, "-")
			if !isRange {
				hi = lo
			}
			l, _ := strconv.Atoi(lo)
			h, _ := strconv.Atoi(hi)
			if int(pkt.Port) >= l && int(pkt.Port) <= h {
				return true
			}
		}
	}
	return false
}

func inRanges(ranges []string, a netip.Addr, emptyMatches bool) bool {
	if len(ranges) == 0 {
		return emptyMatches
	}
	for _, r := range ranges {
		if p, err := netip.ParsePrefix(r); err == nil && p.Contains(a) {
			return true
		}
		if ip, err := netip.ParseAddr(r); err == nil && ip == a {
			return true
		}
	}
	return false
}

func anyOf(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func number(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	}
	return 0, false
}
