package announce

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// rttSamples returns the observations of portico_forwarder_peer_rtt_seconds
// so far: their count and sum in seconds.
func rttSamples(t *testing.T) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := metricPeerRTT.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// pair returns members "a" (10.0.0.1) and "b" (10.0.0.2), peers of each
// other, not running: heartbeats go from nextHeartbeat to accept by hand.
func pair(t *testing.T) (a, b *Members) {
	k := testKeys(t, keyA)
	a = NewMembers(MembersConfig{Self: "a", Keys: k, Interval: 50 * time.Millisecond})
	b = NewMembers(MembersConfig{Self: "b", Keys: k, Interval: 50 * time.Millisecond})
	a.SetPeers(map[string]netip.AddrPort{"b": netip.MustParseAddrPort("10.0.0.2:7473")})
	b.SetPeers(map[string]netip.AddrPort{"a": netip.MustParseAddrPort("10.0.0.1:7473")})
	return a, b
}

var peerA = netip.MustParseAddr("10.0.0.1")

// next builds, seals and returns m's next heartbeat as sent at now.
func next(t *testing.T, m *Members, now time.Time) []byte {
	t.Helper()
	m.mu.Lock()
	hb := m.nextHeartbeatLocked(now, false)
	m.mu.Unlock()
	return seal(t, m.Keys(), hb)
}

// TestHeartbeatEchoMeasuresRTT: a heartbeat echoes the newest heartbeat
// heard from each peer with the time it was held, so the first sender
// computes the round trip without comparing clocks (now - sent - held) and
// observes it in portico_forwarder_peer_rtt_seconds. Before, heartbeats
// were one-way and no round-trip time existed.
func TestHeartbeatEchoMeasuresRTT(t *testing.T) {
	a, b := pair(t)
	t0 := time.Now()
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	if r := b.accept(peerA, next(t, a, ms(0)), ms(10)); r != "" {
		t.Fatal(r)
	}
	fromB := next(t, b, ms(15)) // held 5 ms
	var hb heartbeat
	if err := json.Unmarshal(fromB[len(heartbeatMagic):len(fromB)-macSize], &hb); err != nil {
		t.Fatal(err)
	}
	if len(hb.Echoes) != 1 || hb.Echoes[0].Inc != a.inc || hb.Echoes[0].Seq != 1 || hb.Echoes[0].HeldMicros != 5000 {
		t.Fatalf("b's heartbeat echoes %+v, want a's incarnation %d, seq 1, held 5000 µs", hb.Echoes, a.inc)
	}
	n0, s0 := rttSamples(t)
	if r := a.accept(peerB, fromB, ms(30)); r != "" {
		t.Fatal(r)
	}
	n1, s1 := rttSamples(t)
	if n1-n0 != 1 || fmt.Sprintf("%.4f", s1-s0) != "0.0250" {
		t.Fatalf("observed %d round trips summing %.4fs, want one of 0.025s (30 ms since sent, 5 ms held by b)", n1-n0, s1-s0)
	}
	// b echoes a's heartbeat in its next datagram too, held longer: a
	// second sample of the same trip, as long as a remembers sending it.
	if r := a.accept(peerB, next(t, b, ms(40)), ms(52)); r != "" {
		t.Fatal(r)
	}
	n2, s2 := rttSamples(t)
	if n2-n1 != 1 || fmt.Sprintf("%.4f", s2-s1) != "0.0220" {
		t.Fatalf("second echo: %d samples summing %.4fs, want one of 0.022s", n2-n1, s2-s1)
	}
}

// TestHeartbeatEchoIgnored: echoes that cannot be a round trip of this
// node's heartbeats are not observed: another incarnation's (this node
// restarted), a sequence this node did not send or no longer remembers, a
// held time longer than the trip, and anything in a rejected datagram.
func TestHeartbeatEchoIgnored(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name string
		echo func(a *Members) echo
	}{
		{"other incarnation", func(a *Members) echo { return echo{Inc: a.inc + 1, Seq: 1, HeldMicros: 1} }},
		{"sequence never sent", func(a *Members) echo { return echo{Inc: a.inc, Seq: 99, HeldMicros: 1} }},
		{"held longer than the trip", func(a *Members) echo { return echo{Inc: a.inc, Seq: 1, HeldMicros: 60_000} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := pair(t)
			next(t, a, t0)
			n0, _ := rttSamples(t)
			hb := heartbeat{Version: 2, Node: "b", Incarnation: 3, Seq: 1, Echoes: []echo{tc.echo(a)}}
			if r := a.accept(peerB, seal(t, a.Keys(), hb), t0.Add(50*time.Millisecond)); r != "" {
				t.Fatal(r)
			}
			if n1, _ := rttSamples(t); n1 != n0 {
				t.Fatalf("observed %d round trips from an impossible echo", n1-n0)
			}
		})
	}
	t.Run("sequence forgotten", func(t *testing.T) {
		a, _ := pair(t)
		next(t, a, t0)
		for i := range sentRing {
			next(t, a, t0.Add(time.Duration(i+1)*time.Millisecond))
		}
		n0, _ := rttSamples(t)
		hb := heartbeat{Version: 2, Node: "b", Incarnation: 3, Seq: 1, Echoes: []echo{{Inc: a.inc, Seq: 1, HeldMicros: 1}}}
		if r := a.accept(peerB, seal(t, a.Keys(), hb), t0.Add(time.Second)); r != "" {
			t.Fatal(r)
		}
		if n1, _ := rttSamples(t); n1 != n0 {
			t.Fatal("observed a round trip for a sequence overwritten in the ring")
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		a, _ := pair(t)
		next(t, a, t0)
		n0, _ := rttSamples(t)
		hb := heartbeat{Version: 2, Node: "b", Incarnation: 3, Seq: 1, Echoes: []echo{{Inc: a.inc, Seq: 1, HeldMicros: 1}}}
		if r := a.accept(peerB, seal(t, testKeys(t, keyB), hb), t0.Add(10*time.Millisecond)); r != RejectUnauthentic {
			t.Fatalf("rejected %q, want unauthenticated", r)
		}
		if n1, _ := rttSamples(t); n1 != n0 {
			t.Fatal("observed a round trip from a datagram signed with another key")
		}
	})
}

// TestHeartbeatEchoesBounded: a heartbeat echoes at most MaxEchoes peers,
// only peers heard within DeadAfter, and takes turns, so that in a large
// cluster every peer is echoed within a few heartbeats while the datagram
// stays small.
func TestHeartbeatEchoesBounded(t *testing.T) {
	k := testKeys(t, keyA)
	m := NewMembers(MembersConfig{Self: "a", Keys: k, Interval: 50 * time.Millisecond})
	peers := map[string]netip.AddrPort{}
	const n = 3*MaxEchoes + 1
	for i := range n {
		peers[fmt.Sprintf("p%03d", i)] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 7473)
	}
	m.SetPeers(peers)
	now := time.Now()
	for i := range n {
		hb := heartbeat{Version: 2, Node: fmt.Sprintf("p%03d", i), Incarnation: uint64(1000 + i), Seq: 1}
		if i == 0 {
			continue // p000 is never heard: never echoed
		}
		if r := m.accept(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), seal(t, k, hb), now); r != "" {
			t.Fatal(r)
		}
	}
	echoed := map[uint64]int{}
	for i := range 3 {
		m.mu.Lock()
		hb := m.nextHeartbeatLocked(now.Add(time.Duration(i)*time.Millisecond), false)
		m.mu.Unlock()
		if len(hb.Echoes) != MaxEchoes {
			t.Fatalf("heartbeat %d echoes %d peers, want %d", i, len(hb.Echoes), MaxEchoes)
		}
		for _, e := range hb.Echoes {
			echoed[e.Inc]++
		}
	}
	if len(echoed) != n-1 || echoed[1000] != 0 {
		t.Fatalf("three heartbeats echoed %d distinct peers, want all %d heard ones", len(echoed), n-1)
	}
	m.mu.Lock()
	late := m.nextHeartbeatLocked(now.Add(m.cfg.DeadAfter+time.Millisecond), false)
	m.mu.Unlock()
	if len(late.Echoes) != 0 {
		t.Fatalf("echoed %d peers not heard for DeadAfter", len(late.Echoes))
	}
	m.mu.Lock()
	leaving := m.nextHeartbeatLocked(now, true)
	m.mu.Unlock()
	if len(leaving.Echoes) != 0 || len(leaving.Claims) != 0 {
		t.Fatalf("the leaving heartbeat carries %+v", leaving)
	}
	// A received list longer than MaxEchoes is cut, not trusted.
	body, _ := json.Marshal(heartbeat{Version: 2, Node: "x", Echoes: make([]echo, 10*MaxEchoes)})
	if hb, r := parseHeartbeat(body); r != "" || len(hb.Echoes) != MaxEchoes {
		t.Fatalf("parsed %d echoes (%q), want %d", len(hb.Echoes), r, MaxEchoes)
	}
}

// legacyHeartbeat is the heartbeat body of the release before echoes, and
// legacyParse its decoder: a forwarder of that release in a rolling upgrade.
type legacyHeartbeat struct {
	Version     int          `json:"v"`
	Node        string       `json:"node"`
	Incarnation uint64       `json:"inc"`
	Seq         uint64       `json:"seq"`
	Claims      []netip.Addr `json:"claims,omitempty"`
	Standby     bool         `json:"standby,omitempty"`
	Leaving     bool         `json:"leaving,omitempty"`
}

func legacyParse(b []byte) (legacyHeartbeat, bool) {
	var hb legacyHeartbeat
	if json.Unmarshal(b, &hb) != nil || hb.Version != 2 || hb.Node == "" || len(hb.Claims) > MaxClaims {
		return legacyHeartbeat{}, false
	}
	return hb, true
}

// TestHeartbeatWireCompatibility: echoes are an optional field of wire
// version 2, so forwarders of the previous release and this one hear each
// other during a rolling upgrade, both ways. The golden datagram was sealed
// by the previous release (commit 55c92b2).
func TestHeartbeatWireCompatibility(t *testing.T) {
	old, err := os.ReadFile("testdata/heartbeat-before-echo.bin")
	if err != nil {
		t.Fatal(err)
	}
	m := receiver(t, testKeys(t, keyA))
	n0, _ := rttSamples(t)
	if r := m.accept(peerB, old, time.Now()); r != "" {
		t.Fatalf("the previous release's heartbeat was rejected: %s", r)
	}
	if v := m.View(); len(v.Alive) != 2 || !slices.Equal(v.Claims["b"], []netip.Addr{addr(1)}) {
		t.Fatalf("view after the previous release's heartbeat: %+v", v)
	}
	if n1, _ := rttSamples(t); n1 != n0 {
		t.Fatal("observed a round trip from a heartbeat without echoes")
	}

	a, b := pair(t)
	now := time.Now()
	if r := b.accept(peerA, next(t, a, now), now); r != "" {
		t.Fatal(r)
	}
	hb := heartbeat{}
	b.mu.Lock()
	hb = b.nextHeartbeatLocked(now, false)
	b.mu.Unlock()
	hb.Claims = []netip.Addr{addr(1)}
	sealed := seal(t, b.Keys(), hb)
	if len(hb.Echoes) == 0 {
		t.Fatal("no echo to test with")
	}
	// The previous release checks the MAC over the bytes as they are and
	// then decodes the body ignoring fields it does not know.
	if !hmacValid(testKeys(t, keyA), sealed) || string(sealed[:len(heartbeatMagic)]) != "PHB2" {
		t.Fatal("the new datagram does not pass the previous release's MAC check")
	}
	got, ok := legacyParse(sealed[len(heartbeatMagic) : len(sealed)-macSize])
	want := legacyHeartbeat{Version: 2, Node: "b", Incarnation: b.inc, Seq: hb.Seq, Claims: hb.Claims}
	if !ok || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the previous release decodes %+v (ok %v), want %+v", got, ok, want)
	}
}

// delayRelay forwards UDP datagrams arriving on listen to dst, each after
// the current delay, sending from the address src (the sender the receiver
// expects: only the port differs). The kernel of the test machines has no
// sch_netem, so the delay is injected here.
type delayRelay struct {
	in, out *net.UDPConn
	dst     netip.AddrPort
	delay   atomic.Int64
}

func newDelayRelay(t *testing.T, listen, src, dst netip.AddrPort) *delayRelay {
	t.Helper()
	in, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatal(err)
	}
	out, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(src))
	if err != nil {
		t.Fatal(err)
	}
	r := &delayRelay{in: in, out: out, dst: dst}
	t.Cleanup(func() { in.Close(); out.Close() })
	go func() {
		buf := make([]byte, MaxDatagram+1)
		for {
			n, _, err := in.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b := slices.Clone(buf[:n])
			time.AfterFunc(time.Duration(r.delay.Load()), func() { _, _ = out.WriteToUDPAddrPort(b, dst) })
		}
	}()
	return r
}

// TestPeerRTTOverLoopback: two running forwarders' heartbeats measure a
// small round trip on loopback, and one the size of the delay when the
// path from a to b is delayed.
func TestPeerRTTOverLoopback(t *testing.T) {
	k := testKeys(t, keyA)
	aAddr := freePort(t)
	bAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), aAddr.Port())
	relayIn := netip.AddrPortFrom(bAddr.Addr(), freePort(t).Port())
	relay := newDelayRelay(t, relayIn, netip.AddrPortFrom(aAddr.Addr(), 0), bAddr)
	cfg := func(self string, listen netip.AddrPort) MembersConfig {
		return MembersConfig{Self: self, Listen: listen, Keys: k, Interval: 20 * time.Millisecond, DeadAfter: 200 * time.Millisecond}
	}
	a, b := NewMembers(cfg("a", aAddr)), NewMembers(cfg("b", bAddr))
	// a reaches b through the relay (b's address, another port); b
	// reaches a directly. Both see the other's real source address.
	a.SetPeers(map[string]netip.AddrPort{"a": aAddr, "b": relayIn})
	b.SetPeers(map[string]netip.AddrPort{"a": aAddr, "b": bAddr})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, m := range []*Members{a, b} {
		go func() { _ = m.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })

	mean := func(d time.Duration) (float64, uint64) {
		time.Sleep(d) // settle: trips begun before the change end
		n0, s0 := rttSamples(t)
		time.Sleep(600 * time.Millisecond)
		n1, s1 := rttSamples(t)
		if n1 == n0 {
			t.Fatal("no round trip measured in 600 ms")
		}
		return (s1 - s0) / float64(n1-n0), n1 - n0
	}
	direct, n := mean(200 * time.Millisecond)
	t.Logf("loopback: mean round trip %.2f ms over %d samples", direct*1000, n)
	if direct <= 0 || direct > 0.020 {
		t.Fatalf("mean round trip on loopback %.2f ms, want above 0 and below 20 ms", direct*1000)
	}
	const delay = 40 * time.Millisecond
	relay.delay.Store(int64(delay))
	delayed, n := mean(200 * time.Millisecond)
	t.Logf("a->b delayed %s: mean round trip %.2f ms over %d samples", delay, delayed*1000, n)
	if delayed < delay.Seconds() || delayed > delay.Seconds()+0.020 {
		t.Fatalf("mean round trip with a %s delay %.2f ms, want between %s and %s", delay, delayed*1000, delay, delay+20*time.Millisecond)
	}
}
