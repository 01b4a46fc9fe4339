package announce

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	dto "github.com/prometheus/client_model/go"
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
		{Version: 2, Node: "a", Incarnation: 1, Seq: 3, Echoes: []echo{{Inc: 9, Seq: 4, HeldMicros: 1200}, {Inc: 10, Seq: 1}}},
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
		if len(b) > MaxDatagram || hb.Node == "" || hb.Version != 2 || len(hb.Claims) > MaxClaims || len(hb.Echoes) > MaxEchoes {
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
	f.Add([]byte(`{"v":2,"node":"a","inc":1,"seq":2,"echo":[{"inc":9,"seq":4,"held_us":1200},{"inc":1,"seq":1,"held_us":-5}]}`))
	f.Add([]byte(`{"v":2,"node":"a","echo":[{},{},{},{},{},{},{},{},{},{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, reason := parseHeartbeat(b)
		if reason != "" {
			return
		}
		if hb.Node == "" || hb.Version != 2 || len(hb.Claims) > MaxClaims || len(hb.Echoes) > MaxEchoes {
			t.Fatalf("accepted %+v", hb)
		}
		for _, c := range hb.Claims {
			if !c.IsValid() {
				t.Fatalf("accepted invalid claim in %+v", hb)
			}
		}
	})
}

// FuzzHeartbeatEcho: whatever an authenticated peer echoes, a round trip is
// observed only for a heartbeat this node sent, and is never negative nor
// longer than the time since that heartbeat was sent.
func FuzzHeartbeatEcho(f *testing.F) {
	f.Add(uint64(0), uint64(1), int64(500), false)
	f.Add(uint64(1), uint64(3), int64(0), true)
	f.Add(uint64(0), uint64(65), int64(-1), false)
	f.Add(uint64(0), uint64(1), int64(1<<62), false)
	f.Fuzz(func(t *testing.T, incDelta, seq uint64, held int64, leaving bool) {
		keys := testKeys(t, "fuzz-key-0123456789")
		m := NewMembers(MembersConfig{Self: "a", Keys: keys})
		m.SetPeers(map[string]netip.AddrPort{"b": netip.MustParseAddrPort("10.0.0.2:7473")})
		t0 := time.Now()
		m.mu.Lock()
		for i := range 3 {
			m.nextHeartbeatLocked(t0.Add(time.Duration(i)*time.Millisecond), false)
		}
		m.mu.Unlock()
		hb := heartbeat{Version: 2, Node: "b", Incarnation: 5, Seq: 1, Leaving: leaving,
			Echoes: []echo{{Inc: m.inc + incDelta, Seq: seq, HeldMicros: held}}}
		b, err := keys.seal(hb)
		if err != nil {
			t.Fatal(err)
		}
		var before dto.Metric
		_ = metricPeerRTT.Write(&before)
		now := t0.Add(10 * time.Millisecond)
		if r := m.accept(netip.MustParseAddr("10.0.0.2"), b, now); r != "" {
			t.Fatal(r)
		}
		var after dto.Metric
		_ = metricPeerRTT.Write(&after)
		n := after.GetHistogram().GetSampleCount() - before.GetHistogram().GetSampleCount()
		rtt := after.GetHistogram().GetSampleSum() - before.GetHistogram().GetSampleSum()
		switch {
		case n > 1:
			t.Fatalf("one echo observed %d round trips", n)
		case n == 1 && (incDelta != 0 || seq < 1 || seq > 3):
			t.Fatalf("observed a round trip for an echo of inc+%d seq %d, never sent", incDelta, seq)
		case n == 1 && (rtt < 0 || rtt > now.Sub(t0).Seconds()+1e-9):
			t.Fatalf("observed a round trip of %gs for seq %d held %dµs", rtt, seq, held)
		}
	})
}
