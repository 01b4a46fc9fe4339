package main

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
)

func svcWith(name string, gen int64, ready metav1.ConditionStatus, condGen int64, ips ...string) corev1.Service {
	s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "portico-soak", Name: name, Generation: gen}}
	if ready != "" {
		s.Status.Conditions = []metav1.Condition{{Type: readyCondition, Status: ready, ObservedGeneration: condGen}}
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func TestConverged(t *testing.T) {
	announced := &lbv1.LoadBalancer{Status: lbv1.LoadBalancerStatus{Announcements: []lbv1.Announcement{{Address: "10.88.0.200", Node: "node-n1"}}}}
	for _, tc := range []struct {
		name  string
		svc   corev1.Service
		rec   *lbv1.LoadBalancer
		local bool
		ok    bool
	}{
		{"memory, ready for this generation", svcWith("a", 2, metav1.ConditionTrue, 2, "10.129.0.1"), nil, false, true},
		{"ready for an older generation", svcWith("a", 3, metav1.ConditionTrue, 2, "10.129.0.1"), nil, false, false},
		{"not ready", svcWith("a", 1, metav1.ConditionFalse, 1, "10.129.0.1"), nil, false, false},
		{"no condition", svcWith("a", 1, "", 0, "10.129.0.1"), nil, false, false},
		{"no address", svcWith("a", 1, metav1.ConditionTrue, 1), nil, false, false},
		{"local, announced", svcWith("a", 1, metav1.ConditionTrue, 1, "10.88.0.200"), announced, true, true},
		{"local, not announced", svcWith("a", 1, metav1.ConditionTrue, 1, "10.88.0.201"), announced, true, false},
		{"local, no record", svcWith("a", 1, metav1.ConditionTrue, 1, "10.88.0.200"), nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := converged(&tc.svc, tc.rec, tc.local)
			if (err == nil) != tc.ok {
				t.Fatalf("converged = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestSharedAddressesAndDoubleAnnouncements(t *testing.T) {
	svcs := []corev1.Service{
		svcWith("a", 1, metav1.ConditionTrue, 1, "10.88.0.200"),
		svcWith("b", 1, metav1.ConditionTrue, 1, "10.88.0.201"),
		svcWith("c", 1, metav1.ConditionTrue, 1, "10.88.0.200"),
	}
	if got, want := sharedAddresses(svcs), []string{"10.88.0.200 held by portico-soak/a, portico-soak/c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("sharedAddresses = %q, want %q", got, want)
	}
	if got := sharedAddresses(svcs[:2]); got != nil {
		t.Fatalf("distinct addresses reported as shared: %q", got)
	}
	recs := []lbv1.LoadBalancer{
		{Status: lbv1.LoadBalancerStatus{Announcements: []lbv1.Announcement{{Address: "10.88.0.200", Node: "node-n1"}}}},
		{Status: lbv1.LoadBalancerStatus{Announcements: []lbv1.Announcement{{Address: "10.88.0.200", Node: "node-n2"}, {Address: "10.88.0.201", Node: "node-n2"}}}},
	}
	if got, want := doubleAnnouncements(recs), []string{"10.88.0.200 announced by node-n1, node-n2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("doubleAnnouncements = %q, want %q", got, want)
	}
	if got := doubleAnnouncements(recs[1:]); got != nil {
		t.Fatalf("single announcements reported: %q", got)
	}
}

func TestARPReplyMACs(t *testing.T) {
	out := `ARPING 10.88.0.200
60 bytes from 02:00:0A:58:00:01 (10.88.0.200): index=0 time=1.2 msec
60 bytes from 02:00:0a:58:00:01 (10.88.0.200): index=1 time=0.9 msec
60 bytes from 02:00:0a:58:00:02 (10.88.0.200): index=2 time=0.8 msec
Timeout

--- 10.88.0.200 statistics ---
3 packets transmitted, 3 packets received,   0% unanswered (0 extra)
`
	// A handover between two requests: both answered, never at once.
	answered, double := arpReplyMACs(out)
	if want := []string{"02:00:0a:58:00:01", "02:00:0a:58:00:02"}; !reflect.DeepEqual(answered, want) || double != nil {
		t.Fatalf("arpReplyMACs = %q, %q; want %q and no double answer", answered, double, want)
	}
	// Two MACs answering the same request: two announcers at once.
	both := out + "60 bytes from 02:00:0a:58:00:03 (10.88.0.200): index=1 time=1.0 msec\n"
	if _, double := arpReplyMACs(both); !reflect.DeepEqual(double, []string{"02:00:0a:58:00:01", "02:00:0a:58:00:03"}) {
		t.Fatalf("double answers = %q, want the two MACs of request 1", double)
	}
	if got, double := arpReplyMACs("Timeout\nTimeout\n"); got != nil || double != nil {
		t.Fatalf("no replies gave %q %q", got, double)
	}
}

func TestNFTLeaks(t *testing.T) {
	clean := `table inet portico {
	map lb-tcp-v4 {
		type ipv4_addr . inet_proto . inet_service : verdict
	}
	chain nodeports {
		ip daddr 10.88.0.20 return
	}
}`
	if got := nftLeaks(clean, "portico-soak", []string{"10.88.0.200"}); got != nil {
		t.Fatalf("a clean table leaks %q (10.88.0.20 is not 10.88.0.200)", got)
	}
	leaky := clean + `
	chain "svc-portico-soak/web-1/tcp/80" {
	}
	elements = { 10.88.0.200 . tcp . 80 : goto x }`
	if got := nftLeaks(leaky, "portico-soak", []string{"10.88.0.200"}); len(got) != 2 {
		t.Fatalf("leaky table: got %q, want the chain and the element", got)
	}
}
