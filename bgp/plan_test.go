package bgp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
)

func testNode(name string, ready bool, labels map[string]string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func svc(name string, localPolicy bool, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	if localPolicy {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func endpoints(svc string, nodes map[string]bool) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for n, ready := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}})
	}
	return es
}

func pool(name, mode string, addrs ...string) lbv1.IPPool {
	return lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}},
		Spec: lbv1.IPPoolSpec{Addresses: addrs, Announce: mode}}
}

func peer(name, addr string, edit ...func(*lbv1.BGPPeerSpec)) lbv1.BGPPeer {
	p := lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: lbv1.BGPPeerSpec{Address: addr, PeerASN: 64512, MyASN: 64513}}
	for _, e := range edit {
		e(&p.Spec)
	}
	return p
}

func adv(name string, spec lbv1.BGPAdvertisementSpec) lbv1.BGPAdvertisement {
	return lbv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

// show renders a plan as "peer: prefix[attrs] ...; peer: error", sorted.
func show(plan map[string]PeerPlan) string {
	var out []string
	for _, name := range sortedKeys(plan) {
		pp := plan[name]
		if pp.Error != "" {
			out = append(out, name+": !"+pp.Error)
			continue
		}
		var rs []string
		for _, r := range pp.Routes {
			s := r.Prefix.String()
			if len(r.Communities) > 0 || len(r.LargeCommunities) > 0 || r.LocalPref != 0 {
				s += fmt.Sprintf("%v%v/%d", r.Communities, r.LargeCommunities, r.LocalPref)
			}
			rs = append(rs, s)
		}
		out = append(out, name+": "+strings.Join(rs, " "))
	}
	return strings.Join(out, "; ")
}

func TestPlan(t *testing.T) {
	bgpPool := pool("routed", lbv1.AnnounceBGP, "192.0.2.0/28", "2001:db8::/120")
	tor4 := peer("tor4", "10.0.0.254")
	tor6 := peer("tor6", "fd00::254")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bgp"}, Data: map[string][]byte{"password": []byte("s3cret")}}
	self := testNode("n1", true, map[string]string{"rack": "a"})
	base := func() Inputs {
		return Inputs{Node: self, Pools: []lbv1.IPPool{bgpPool}, Peers: []lbv1.BGPPeer{tor4, tor6},
			Secrets: map[string]*corev1.Secret{"bgp": secret}}
	}
	excluded := testNode("n1", true, map[string]string{model.LabelExcludeFromLB: ""})
	cases := []struct {
		name string
		edit func(*Inputs)
		want string
	}{
		{"cluster policy: host route per address, each to the peer of its family", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1", "2001:db8::1")}
		}, "tor4: 192.0.2.1/32; tor6: 2001:db8::1/128"},
		{"local policy with a ready endpoint here", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("db", true, "192.0.2.2")}
			in.EndpointSlices = []discoveryv1.EndpointSlice{endpoints("db", map[string]bool{"n1": true, "n2": true})}
		}, "tor4: 192.0.2.2/32; tor6: "},
		{"local policy, endpoint here not ready: withdrawn", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("db", true, "192.0.2.2")}
			in.EndpointSlices = []discoveryv1.EndpointSlice{endpoints("db", map[string]bool{"n1": false, "n2": true})}
		}, "tor4: ; tor6: "},
		{"local policy, endpoints elsewhere only", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("db", true, "192.0.2.2")}
			in.EndpointSlices = []discoveryv1.EndpointSlice{endpoints("db", map[string]bool{"n2": true})}
		}, "tor4: ; tor6: "},
		{"shared address: a cluster sharer is enough", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("a", true, "192.0.2.3"), svc("b", false, "192.0.2.3")}
		}, "tor4: 192.0.2.3/32; tor6: "},
		{"node not ready advertises nothing but keeps its sessions", func(in *Inputs) {
			in.Node = testNode("n1", false, nil)
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1")}
		}, "tor4: ; tor6: "},
		{"node excluded from load balancers", func(in *Inputs) {
			in.Node = excluded
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1")}
		}, "tor4: ; tor6: "},
		{"address outside every pool (not allocated by Portico) is never routed", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("web", false, "198.51.100.7", "192.0.2.1")}
		}, "tor4: 192.0.2.1/32; tor6: "},
		{"L2-only pool is not routed, L2AndBGP is", func(in *Inputs) {
			in.Pools = []lbv1.IPPool{pool("arp", lbv1.AnnounceL2, "198.51.100.0/24"), pool("both", lbv1.AnnounceL2AndBGP, "203.0.113.0/24"), pool("old", "", "192.0.2.0/24")}
			in.Services = []*corev1.Service{svc("a", false, "198.51.100.1"), svc("b", false, "203.0.113.1"), svc("c", false, "192.0.2.9")}
		}, "tor4: 203.0.113.1/32; tor6: "},
		{"pool with invalid addresses is not used", func(in *Inputs) {
			in.Pools = []lbv1.IPPool{pool("bad", lbv1.AnnounceBGP, "192.0.2.5/24")}
			in.Services = []*corev1.Service{svc("a", false, "192.0.2.5")}
		}, "tor4: ; tor6: "},
		{"service without an address yet", func(in *Inputs) {
			in.Services = []*corev1.Service{svc("pending", false)}
		}, "tor4: ; tor6: "},
		{"node selector picks the peers of this rack", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("rack-a", "10.0.0.1", func(s *lbv1.BGPPeerSpec) {
				s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "a"}}
			}), peer("rack-b", "10.0.1.1", func(s *lbv1.BGPPeerSpec) {
				s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "b"}}
			})}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1")}
		}, "rack-a: 192.0.2.1/32"},
		{"overlapping peers: the first by name wins, the other says why", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("b-dup", "10.0.0.254"), peer("a-tor", "10.0.0.254")}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1")}
		}, "a-tor: 192.0.2.1/32; b-dup: !BGPPeer a-tor already peers with 10.0.0.254 from this node"},
		{"missing password Secret: no session, no routes, a reason", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("tor4", "10.0.0.254", func(s *lbv1.BGPPeerSpec) { s.PasswordSecret = &lbv1.SecretKeyRef{Name: "nope"} })}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1")}
		}, `tor4: !password Secret "nope" not found in the forwarders' namespace`},
		{"password Secret without the key", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("tor4", "10.0.0.254", func(s *lbv1.BGPPeerSpec) { s.PasswordSecret = &lbv1.SecretKeyRef{Name: "bgp", Key: "other"} })}
		}, `tor4: !password Secret "bgp" has no key "other"`},
		{"ASN out of range (stored before validation)", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("tor4", "10.0.0.254", func(s *lbv1.BGPPeerSpec) { s.PeerASN = 1 << 32 })}
		}, "tor4: !peerASN 4294967296 is out of range 1..4294967295"},
		{"address not an IP (stored before validation)", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("tor4", "router")}
		}, `tor4: !address "router" is not an IP address`},
		{"keepalive not below hold", func(in *Inputs) {
			in.Peers = []lbv1.BGPPeer{peer("tor4", "10.0.0.254", func(s *lbv1.BGPPeerSpec) {
				s.HoldTime, s.KeepaliveTime = &metav1.Duration{Duration: 9 * time.Second}, &metav1.Duration{Duration: 9 * time.Second}
			})}
		}, "tor4: !keepaliveTime 9s must be below holdTime 9s"},
		{"advertisement: communities, local pref, only to named peers", func(in *Inputs) {
			in.Advertisements = []lbv1.BGPAdvertisement{adv("x", lbv1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Peers: []string{"tor4"},
				Communities: []string{"65000:1"}, LargeCommunities: []string{"64513:1:2"}, LocalPref: ptr.To[int64](200)})}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1", "2001:db8::1")}
		}, "tor4: 192.0.2.1/32[65000:1][64513:1:2]/200; tor6: "},
		{"two advertisements merge their communities", func(in *Inputs) {
			in.Advertisements = []lbv1.BGPAdvertisement{
				adv("x", lbv1.BGPAdvertisementSpec{Communities: []string{"65000:2"}}),
				adv("y", lbv1.BGPAdvertisementSpec{IPPoolSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "routed"}}, Communities: []string{"65000:1"}, LocalPref: ptr.To[int64](50)}),
			}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1")}
		}, "tor4: 192.0.2.1/32[65000:1 65000:2][]/50; tor6: "},
		{"service selector leaves other Services of a selected pool out", func(in *Inputs) {
			in.Advertisements = []lbv1.BGPAdvertisement{adv("x", lbv1.BGPAdvertisementSpec{ServiceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}})}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1"), svc("other", false, "192.0.2.2")}
		}, "tor4: 192.0.2.1/32; tor6: "},
		{"a pool no advertisement selects gets host routes to every peer", func(in *Inputs) {
			in.Pools = append(in.Pools, pool("second", lbv1.AnnounceBGP, "203.0.113.0/24"))
			in.Advertisements = []lbv1.BGPAdvertisement{adv("x", lbv1.BGPAdvertisementSpec{IPPools: []string{"routed"}, Peers: []string{"tor6"}})}
			in.Services = []*corev1.Service{svc("web", false, "192.0.2.1"), svc("other", false, "203.0.113.1")}
		}, "tor4: 203.0.113.1/32; tor6: "},
		{"aggregation length", func(in *Inputs) {
			in.Advertisements = []lbv1.BGPAdvertisement{adv("x", lbv1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](28), AggregationLengthV6: ptr.To[int32](120)})}
			in.Services = []*corev1.Service{svc("a", false, "192.0.2.1", "2001:db8::1"), svc("b", false, "192.0.2.2")}
		}, "tor4: 192.0.2.0/28; tor6: 2001:db8::/120"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.edit(&in)
			if got := show(Plan(in)); got != tc.want {
				t.Errorf("plan\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestPlanPeerSettings: the session's settings come from the BGPPeer with
// the documented defaults.
func TestPlanPeerSettings(t *testing.T) {
	secret := &corev1.Secret{Data: map[string][]byte{"pw": []byte("s3cret")}}
	in := Inputs{Node: testNode("n1", true, nil), Secrets: map[string]*corev1.Secret{"bgp": secret}, Peers: []lbv1.BGPPeer{
		peer("plain", "10.0.0.1"),
		peer("tuned", "10.0.0.2", func(s *lbv1.BGPPeerSpec) {
			s.Port, s.HoldTime, s.KeepaliveTime = 1179, &metav1.Duration{Duration: 3 * time.Second}, &metav1.Duration{Duration: time.Second}
			s.GracefulRestart, s.RestartTime, s.EBGPMultiHop = true, &metav1.Duration{Duration: 30 * time.Second}, true
			s.PasswordSecret = &lbv1.SecretKeyRef{Name: "bgp", Key: "pw"}
			s.BFD = &lbv1.BFDSettings{TransmitInterval: &metav1.Duration{Duration: 50 * time.Millisecond}, DetectMultiplier: ptr.To[int32](4)}
		}),
		peer("bfd-v6", "fd00::1", func(s *lbv1.BGPPeerSpec) { s.BFD = &lbv1.BFDSettings{} }),
		peer("bfd-mult", "10.0.0.3", func(s *lbv1.BGPPeerSpec) { s.BFD = &lbv1.BFDSettings{DetectMultiplier: ptr.To[int32](1)} }),
	}}
	plan := Plan(in)
	if got, want := fmt.Sprintf("%+v", plan["plain"].Peer), "{Name:plain Address:10.0.0.1 Port:179 PeerASN:64512 MyASN:64513 Password: HoldTime:1m30s KeepaliveTime:30s EBGPMultiHop:false GracefulRestart:false RestartTime:2m0s BFD:{DesiredMinTx:0s RequiredMinRx:0s DetectMult:0}}"; got != want {
		t.Errorf("plain\n got %s\nwant %s", got, want)
	}
	if got, want := fmt.Sprintf("%+v", plan["tuned"].Peer), "{Name:tuned Address:10.0.0.2 Port:1179 PeerASN:64512 MyASN:64513 Password:s3cret HoldTime:3s KeepaliveTime:1s EBGPMultiHop:true GracefulRestart:true RestartTime:30s BFD:{DesiredMinTx:50ms RequiredMinRx:300ms DetectMult:4}}"; got != want {
		t.Errorf("tuned\n got %s\nwant %s", got, want)
	}
	if got, want := fmt.Sprintf("%s %+v", plan["bfd-v6"].Error, plan["bfd-v6"].Peer.BFD), " {DesiredMinTx:300ms RequiredMinRx:300ms DetectMult:3}"; got != want {
		t.Errorf("BFD with an IPv6 peer (RFC 5881 over IPv6): %q, want %q", got, want)
	}
	if got := plan["bfd-mult"].Error; got != "bfd.detectMultiplier 1 is out of range 2..255" {
		t.Errorf("BFD multiplier 1: %q", got)
	}
}
