package announce

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// solicitationFrame builds a valid NS frame for target.
func solicitationFrame(t testing.TB, target netip.Addr) []byte {
	src := netip.MustParseAddr("fd00::100")
	dst, _ := ndp.SolicitedNodeMulticast(target)
	body, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}}}, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	ip6 := make([]byte, 40)
	ip6[0] = 0x60
	binary.BigEndian.PutUint16(ip6[4:6], uint16(len(body)))
	ip6[6], ip6[7] = 58, 255
	s, d := src.As16(), dst.As16()
	copy(ip6[8:], s[:])
	copy(ip6[24:], d[:])
	f := ethernet.Frame{Destination: net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 1}, Source: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		EtherType: etherTypeIPv6, Payload: append(ip6, body...)}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSolicitation(t *testing.T) {
	target := netip.MustParseAddr("fd00::200")
	b := solicitationFrame(t, target)
	sol, ok := parseSolicitation(b)
	if !ok || sol.target != target || sol.src != netip.MustParseAddr("fd00::100") || sol.ethSrc.String() != "02:00:00:00:00:01" {
		t.Fatalf("parsed %+v, %v", sol, ok)
	}
	b[14+7] = 64 // a routed packet (hop limit below 255) must be ignored
	if _, ok := parseSolicitation(b); ok {
		t.Fatal("accepted a solicitation with hop limit 64")
	}
}

func FuzzParseSolicitation(f *testing.F) {
	f.Add(solicitationFrame(f, netip.MustParseAddr("fd00::200")))
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, b []byte) {
		sol, ok := parseSolicitation(b)
		if ok && (!sol.target.Is6() || len(sol.ethSrc) != 6) {
			t.Fatalf("accepted %+v", sol)
		}
	})
}

// FuzzOpenHeartbeat: whatever arrives, a datagram is accepted only when it
// carries a valid MAC, and then is well formed and within the limits.
func FuzzOpenHeartbeat(f *testing.F) {
	keys := testKeys(f, "fuzz-key-0123456789")
	for _, hb := range []heartbeat{
		{Version: 2, Node: "a", Incarnation: 1, Seq: 2, Claims: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}},
		{Version: 2, Node: "a", Leaving: true},
	} {
		b, err := keys.seal(hb)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`PHB2{"v":2}`))
	f.Add([]byte(`{"v":1,"node":"a","leaving":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, reason := keys.open(b)
		if reason != "" {
			return
		}
		if len(b) > MaxDatagram || hb.Node == "" || hb.Version != 2 || len(hb.Claims) > MaxClaims {
			t.Fatalf("accepted %+v", hb)
		}
		for _, c := range hb.Claims {
			if !c.IsValid() {
				t.Fatalf("accepted invalid claim in %+v", hb)
			}
		}
		// Only what the key signed is accepted: the body re-signs to b.
		if !hmacValid(keys, b) {
			t.Fatalf("accepted %q without a valid MAC", b)
		}
	})
}

// FuzzParseHeartbeat fuzzes the body decoder behind the MAC.
func FuzzParseHeartbeat(f *testing.F) {
	f.Add([]byte(`{"v":2,"node":"a","inc":1,"seq":2,"claims":["192.0.2.1","2001:db8::1"]}`))
	f.Add([]byte(`{"v":2,"node":"a","leaving":true}`))
	f.Add([]byte(`{"v":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, reason := parseHeartbeat(b)
		if reason != "" {
			return
		}
		if hb.Node == "" || hb.Version != 2 || len(hb.Claims) > MaxClaims {
			t.Fatalf("accepted %+v", hb)
		}
		for _, c := range hb.Claims {
			if !c.IsValid() {
				t.Fatalf("accepted invalid claim in %+v", hb)
			}
		}
	})
}
