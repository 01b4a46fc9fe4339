package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

// readyCondition is the Service condition the operator sets.
const readyCondition = "lb.portico.dev/Ready"

// converged says whether the operator has caught up with svc's current
// spec: the Ready condition is True for this generation and the Service has
// an address; for the local class, a node also announces that address
// (the forwarders' part, published in the LoadBalancer record).
func converged(svc *corev1.Service, rec *lbv1.LoadBalancer, local bool) error {
	c := apimeta.FindStatusCondition(svc.Status.Conditions, readyCondition)
	switch {
	case c == nil:
		return fmt.Errorf("no %s condition", readyCondition)
	case c.ObservedGeneration != svc.Generation:
		return fmt.Errorf("%s is for generation %d, spec is %d", readyCondition, c.ObservedGeneration, svc.Generation)
	case c.Status != metav1.ConditionTrue:
		return fmt.Errorf("%s=%s: %s", readyCondition, c.Status, c.Message)
	case len(svc.Status.LoadBalancer.Ingress) == 0:
		return fmt.Errorf("no address")
	}
	if !local {
		return nil
	}
	if rec == nil {
		return fmt.Errorf("no LoadBalancer record")
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		found := false
		for _, a := range rec.Status.Announcements {
			if a.Address == in.IP && a.Node != "" {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("address %s not announced (announcements %v)", in.IP, rec.Status.Announcements)
		}
	}
	return nil
}

// sharedAddresses returns one message per address that more than one
// Service holds in its status (no soak Service asks to share).
func sharedAddresses(svcs []corev1.Service) []string {
	holders := map[string][]string{}
	for _, s := range svcs {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				holders[in.IP] = append(holders[in.IP], s.Namespace+"/"+s.Name)
			}
		}
	}
	return multiples(holders, "held by")
}

// doubleAnnouncements returns one message per address that the LoadBalancer
// records say more than one node announces.
func doubleAnnouncements(recs []lbv1.LoadBalancer) []string {
	nodes := map[string][]string{}
	for _, r := range recs {
		for _, a := range r.Status.Announcements {
			if !contains(nodes[a.Address], a.Node) {
				nodes[a.Address] = append(nodes[a.Address], a.Node)
			}
		}
	}
	return multiples(nodes, "announced by")
}

func multiples(m map[string][]string, verb string) []string {
	var out []string
	for k, v := range m {
		if len(v) > 1 {
			sort.Strings(v)
			out = append(out, fmt.Sprintf("%s %s %s", k, verb, strings.Join(v, ", ")))
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var arpReplyRE = regexp.MustCompile(`(?i)\bfrom ([0-9a-f]{2}(?::[0-9a-f]{2}){5})\b.*\bindex=(\d+)`)

// arpReplyMACs reads arping's replies ("60 bytes from 02:00:0a:58:00:01
// (10.88.0.200): index=0 time=...") and returns the MACs that answered, and
// the MACs that answered one and the same request: two announcers at once.
// Two MACs on different requests are a handover between them (the probes
// are 200 ms apart), not a double announcement.
func arpReplyMACs(out string) (answered, double []string) {
	byIndex := map[string][]string{}
	for _, m := range arpReplyRE.FindAllStringSubmatch(out, -1) {
		mac := strings.ToLower(m[1])
		if !contains(answered, mac) {
			answered = append(answered, mac)
		}
		if !contains(byIndex[m[2]], mac) {
			byIndex[m[2]] = append(byIndex[m[2]], mac)
		}
	}
	for _, macs := range byIndex {
		if len(macs) > 1 {
			for _, mac := range macs {
				if !contains(double, mac) {
					double = append(double, mac)
				}
			}
		}
	}
	sort.Strings(answered)
	sort.Strings(double)
	return answered, double
}

// nftLeaks returns what a node's Portico table (nft list table inet
// portico) still holds for the soak once every Service is gone: a line
// naming the soak namespace (Service chains are svc-<namespace>/<name>/...)
// or an address some soak Service held.
func nftLeaks(table, namespace string, addresses []string) []string {
	var leaks []string
	for _, line := range strings.Split(table, "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, namespace+"/") {
			leaks = append(leaks, line)
			continue
		}
		for _, a := range addresses {
			if containsAddress(line, a) {
				leaks = append(leaks, line)
				break
			}
		}
	}
	return leaks
}

// containsAddress finds addr in s as a whole address: 10.88.0.20 is not in
// "10.88.0.201".
func containsAddress(s, addr string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], addr)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(addr)
		if (start == 0 || !addrChar(s[start-1])) && (end == len(s) || !addrChar(s[end])) {
			return true
		}
		i = start + 1
	}
}

func addrChar(b byte) bool { return b == '.' || b == ':' || (b >= '0' && b <= '9') }

// rssMB returns a process's resident set size (VmRSS) in MiB.
func rssMB(pid int) (int, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
