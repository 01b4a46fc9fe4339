package bgp_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/testenv"
)

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

// TestCRDValidation: the apiserver itself (CEL and OpenAPI rules of the
// generated CRDs) refuses BGPPeers and BGPAdvertisements that no router
// would accept, with a message naming the rule, and accepts the valid ones.
func TestCRDValidation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an apiserver")
	}
	env := testenv.Start(t)
	ctx := context.Background()
	good := func() lbv1.BGPPeerSpec {
		return lbv1.BGPPeerSpec{Address: "10.0.0.254", PeerASN: 64512, MyASN: 64513}
	}
	peers := []struct {
		name string
		edit func(*lbv1.BGPPeerSpec)
		want string // "" = accepted
	}{
		{"minimal", func(*lbv1.BGPPeerSpec) {}, ""},
		{"ipv6 and 4-byte asn", func(s *lbv1.BGPPeerSpec) { s.Address, s.PeerASN, s.MyASN = "2001:db8::1", 4294967295, 4200000000 }, ""},
		{"all timers", func(s *lbv1.BGPPeerSpec) {
			s.HoldTime, s.KeepaliveTime, s.RestartTime = dur("9s"), dur("3s"), dur("30s")
		}, ""},
		{"hold 0 disables keepalives", func(s *lbv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur("0s"), dur("10s") }, ""},
		{"peer asn 0", func(s *lbv1.BGPPeerSpec) { s.PeerASN = 0 }, "peerASN"},
		{"my asn too large", func(s *lbv1.BGPPeerSpec) { s.MyASN = 4294967296 }, "myASN"},
		{"address not an ip", func(s *lbv1.BGPPeerSpec) { s.Address = "router.example" }, "address must be an IP address"},
		{"address a cidr", func(s *lbv1.BGPPeerSpec) { s.Address = "10.0.0.0/24" }, "address must be an IP address"},
		{"hold 2s", func(s *lbv1.BGPPeerSpec) { s.HoldTime = dur("2s") }, "holdTime must be 0 or at least 3s"},
		{"hold too long", func(s *lbv1.BGPPeerSpec) { s.HoldTime = dur("20h") }, "at most 65535s"},
		{"keepalive equal to hold", func(s *lbv1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur("9s"), dur("9s") }, "keepaliveTime must be below holdTime"},
		{"keepalive sub-second", func(s *lbv1.BGPPeerSpec) { s.KeepaliveTime = dur("500ms") }, "keepaliveTime must be at least 1s"},
		{"port out of range", func(s *lbv1.BGPPeerSpec) { s.Port = 70000 }, "port"},
		{"bfd", func(s *lbv1.BGPPeerSpec) {
			s.BFD = &lbv1.BFDSettings{ReceiveInterval: dur("100ms"), TransmitInterval: dur("100ms"), DetectMultiplier: ptr.To[int32](3)}
		}, ""},
		{"bfd interval too short", func(s *lbv1.BGPPeerSpec) { s.BFD = &lbv1.BFDSettings{ReceiveInterval: dur("5ms")} }, "receiveInterval must be between 10ms and 60s"},
		{"bfd multiplier 1", func(s *lbv1.BGPPeerSpec) { s.BFD = &lbv1.BFDSettings{DetectMultiplier: ptr.To[int32](1)} }, "detectMultiplier"},
		{"restart time too long", func(s *lbv1.BGPPeerSpec) { s.RestartTime = dur("2h") }, "restartTime must be between"},
	}
	for i, tc := range peers {
		t.Run("peer/"+tc.name, func(t *testing.T) {
			p := &lbv1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i)}, Spec: good()}
			tc.edit(&p.Spec)
			check(t, env.Client.Create(ctx, p), tc.want)
			if tc.want == "" {
				var got lbv1.BGPPeer
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
					t.Fatal(err)
				}
				if got.Spec.Port != 179 && tc.edit != nil && p.Spec.Port == 0 {
					t.Errorf("port defaulted to %d, want 179", got.Spec.Port)
				}
			}
		})
	}
	advs := []struct {
		name string
		spec lbv1.BGPAdvertisementSpec
		want string
	}{
		{"empty advertises every BGP pool", lbv1.BGPAdvertisementSpec{}, ""},
		{"attributes", lbv1.BGPAdvertisementSpec{IPPools: []string{"a"}, Peers: []string{"tor"}, Communities: []string{"65535:65281", "0:0"},
			LargeCommunities: []string{"4294967295:1:2"}, LocalPref: ptr.To[int64](200), AggregationLength: ptr.To[int32](24), AggregationLengthV6: ptr.To[int32](64)}, ""},
		{"community part too large", lbv1.BGPAdvertisementSpec{Communities: []string{"65536:1"}}, "communities must be ASN:value"},
		{"community not numeric", lbv1.BGPAdvertisementSpec{Communities: []string{"no-export"}}, "communities must be ASN:value"},
		{"large community part too large", lbv1.BGPAdvertisementSpec{LargeCommunities: []string{"4294967296:1:2"}}, "large communities must be"},
		{"large community two parts", lbv1.BGPAdvertisementSpec{LargeCommunities: []string{"1:2"}}, "large communities must be"},
		{"aggregation beyond 32", lbv1.BGPAdvertisementSpec{AggregationLength: ptr.To[int32](33)}, "aggregationLength"},
		{"aggregation v6 beyond 128", lbv1.BGPAdvertisementSpec{AggregationLengthV6: ptr.To[int32](129)}, "aggregationLengthV6"},
		{"local pref negative", lbv1.BGPAdvertisementSpec{LocalPref: ptr.To[int64](-1)}, "localPref"},
	}
	for i, tc := range advs {
		t.Run("advertisement/"+tc.name, func(t *testing.T) {
			a := &lbv1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("a%d", i)}, Spec: tc.spec}
			check(t, env.Client.Create(ctx, a), tc.want)
		})
	}
	t.Run("ippool announce", func(t *testing.T) {
		for i, mode := range []string{"", "L2", "BGP", "L2AndBGP", "ARP"} {
			p := &lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool%d", i)},
				Spec: lbv1.IPPoolSpec{Addresses: []string{fmt.Sprintf("198.51.100.%d", i+1)}, Announce: mode}}
			want := ""
			if mode == "ARP" {
				want = "spec.announce"
			}
			check(t, env.Client.Create(ctx, p), want)
			if mode == "" {
				var got lbv1.IPPool
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
					t.Fatal(err)
				}
				if got.Spec.Announce != lbv1.AnnounceL2 || !got.Spec.AnnouncedByL2() || got.Spec.AnnouncedByBGP() {
					t.Errorf("announce defaulted to %q, want L2", got.Spec.Announce)
				}
			}
		}
	})
}

func check(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("refused: %v", err)
	case want != "" && err == nil:
		t.Errorf("accepted, want an error naming %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %v, want it to name %q", err, want)
	}
}
