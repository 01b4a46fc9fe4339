package announce

import (
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testKeys(t testing.TB, keys ...string) *Keyring {
	t.Helper()
	k, err := ParseKeys([]byte(strings.Join(keys, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hmacValid reports whether b ends in a MAC over the rest under one of keys.
func hmacValid(k *Keyring, b []byte) bool {
	if len(b) < macSize {
		return false
	}
	for _, key := range k.keys {
		if hmac.Equal(mac(key, b[:len(b)-macSize]), b[len(b)-macSize:]) {
			return true
		}
	}
	return false
}

func TestParseKeys(t *testing.T) {
	k, err := ParseKeys([]byte("# rotation: new key first\n\n  new-key-0123456789abcdef  \nold-key-0123456789abcdef\n"))
	if err != nil || len(k.keys) != 2 || string(k.keys[0]) != "new-key-0123456789abcdef" {
		t.Fatalf("keys %v, %v", k, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "short"} {
		if _, err := ParseKeys([]byte(bad)); err == nil {
			t.Errorf("accepted key file %q", bad)
		}
	}
}

const (
	keyA = "cluster-key-A-0123456789"
	keyB = "cluster-key-B-0123456789"
)

// receiver is node "a" with peer "b" at 10.0.0.2, verifying with keys; it is
// not running, datagrams go straight to accept.
func receiver(t *testing.T, keys *Keyring) *Members {
	m := NewMembers(MembersConfig{Self: "a", Keys: keys, Interval: 50 * time.Millisecond})
	m.SetPeers(map[string]netip.AddrPort{"b": netip.MustParseAddrPort("10.0.0.2:7473")})
	m.SetAddresses([]netip.Addr{addr(1)})
	return m
}

var peerB = netip.MustParseAddr("10.0.0.2")

func seal(t *testing.T, k *Keyring, hb heartbeat) []byte {
	t.Helper()
	b, err := k.seal(hb)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rejected(reason string) float64 {
	return testutil.ToFloat64(metricRejected.WithLabelValues(reason))
}

// TestHeartbeatRejects: every datagram that is not a fresh, authenticated
// heartbeat of a known peer from its address is dropped, with its reason
// counted, and changes nothing. Before, a datagram was checked only by its
// source address: all of these but the wrong-source one were accepted.
func TestHeartbeatRejects(t *testing.T) {
	good := heartbeat{Version: 2, Node: "b", Incarnation: 7, Seq: 10, Claims: []netip.Addr{addr(1)}}
	many := good
	many.Seq = 11
	for i := range MaxClaims + 1 {
		many.Claims = append(many.Claims, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
	}
	forgedLeave := good
	forgedLeave.Seq, forgedLeave.Leaving = 100, true
	v1, _ := json.Marshal(map[string]any{"v": 1, "node": "b", "inc": 7, "seq": 100, "leaving": true})
	truncated := seal(t, testKeys(t, keyA), forgedLeave)
	truncated = truncated[:len(truncated)-1]
	tests := []struct {
		name   string
		from   netip.Addr
		b      []byte
		reason string
	}{
		{"unsigned leave in the old format", peerB, v1, RejectMalformed},
		{"leave signed with another key", peerB, seal(t, testKeys(t, keyB), forgedLeave), RejectUnauthentic},
		{"truncated MAC", peerB, truncated, RejectUnauthentic},
		{"body altered after signing", peerB, []byte(strings.Replace(string(seal(t, testKeys(t, keyA), good)), `"seq":10`, `"seq":99`, 1)), RejectUnauthentic},
		{"oversized", peerB, append(seal(t, testKeys(t, keyA), good), make([]byte, MaxDatagram)...), RejectOversized},
		{"too many claims", peerB, seal(t, testKeys(t, keyA), many), RejectTooManyClaims},
		{"unknown peer", peerB, seal(t, testKeys(t, keyA), heartbeat{Version: 2, Node: "z", Incarnation: 1, Seq: 1}), RejectUnknownPeer},
		{"wrong source", netip.MustParseAddr("10.0.0.66"), seal(t, testKeys(t, keyA), forgedLeave), RejectWrongSource},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := receiver(t, testKeys(t, keyA))
			now := time.Now()
			if r := m.accept(peerB, seal(t, testKeys(t, keyA), good), now); r != "" {
				t.Fatalf("the genuine heartbeat was rejected: %s", r)
			}
			before := rejected(tc.reason)
			if r := m.accept(tc.from, tc.b, now); r != tc.reason {
				t.Fatalf("rejected with %q, want %q", r, tc.reason)
			}
			if got := rejected(tc.reason) - before; got != 1 {
				t.Fatalf("rejected{reason=%q} rose by %v, want 1", tc.reason, got)
			}
			v := m.viewLocked(now)
			if len(v.Alive) != 2 || len(v.Claims["b"]) != 1 {
				t.Fatalf("a rejected datagram changed the view: %+v", v)
			}
		})
	}
}

// TestHeartbeatReplay: within an incarnation only a higher sequence number
// is accepted; a restarted peer (new incarnation) is, and from then on its
// previous incarnation is refused for good. Before, sequence numbers were
// never checked and a recorded "leaving" datagram killed the peer again.
func TestHeartbeatReplay(t *testing.T) {
	k := testKeys(t, keyA)
	m := receiver(t, k)
	now := time.Now()
	hb := heartbeat{Version: 2, Node: "b", Incarnation: 7, Seq: 10, Claims: []netip.Addr{addr(1)}}
	first := seal(t, k, hb)
	if r := m.accept(peerB, first, now); r != "" {
		t.Fatal(r)
	}
	if r := m.accept(peerB, first, now); r != RejectReplayed {
		t.Fatalf("the same datagram again: %q, want replayed", r)
	}
	hb.Seq = 9
	if r := m.accept(peerB, seal(t, k, hb), now); r != RejectReplayed {
		t.Fatalf("an older sequence number: %q, want replayed", r)
	}
	leave := hb
	leave.Seq, leave.Leaving = 11, true
	recordedLeave := seal(t, k, leave)
	// The peer restarts: a new incarnation, starting at 1.
	restarted := heartbeat{Version: 2, Node: "b", Incarnation: 8, Seq: 1}
	if r := m.accept(peerB, recordedLeave, now); r != "" {
		t.Fatal(r)
	}
	if r := m.accept(peerB, seal(t, k, restarted), now); r != "" {
		t.Fatalf("a restarted peer's first heartbeat: %q", r)
	}
	if r := m.accept(peerB, recordedLeave, now); r != RejectReplayed {
		t.Fatalf("the previous incarnation's leave replayed: %q, want replayed", r)
	}
	if v := m.viewLocked(now); len(v.Alive) != 2 {
		t.Fatalf("a replayed leave killed the peer: %+v", v)
	}
}

// TestHeartbeatRateLimit: a flood of valid heartbeats from one peer (a
// buggy or compromised sender) is cut to the peer's rate; beyond it each is
// dropped before any recomputation.
func TestHeartbeatRateLimit(t *testing.T) {
	k := testKeys(t, keyA)
	m := receiver(t, k)
	now := time.Now()
	limited := 0
	for i := range 200 {
		r := m.accept(peerB, seal(t, k, heartbeat{Version: 2, Node: "b", Incarnation: 1, Seq: uint64(i + 1)}), now)
		if r == RejectRateLimited {
			limited++
		} else if r != "" {
			t.Fatal(r)
		}
	}
	if limited < 150 {
		t.Fatalf("%d of 200 same-instant heartbeats were rate limited, want most", limited)
	}
}

// TestKeyRotation: old and new keys are both accepted while a rotation is
// under way (the key file lists both), and signing uses the first key, so
// nodes moved at different times keep hearing each other.
func TestKeyRotation(t *testing.T) {
	old, both, newFirst, onlyNew := testKeys(t, keyA), testKeys(t, keyA, keyB), testKeys(t, keyB, keyA), testKeys(t, keyB)
	hb := func(seq uint64) heartbeat { return heartbeat{Version: 2, Node: "b", Incarnation: 1, Seq: seq} }
	steps := []struct {
		sender, receiver *Keyring
		ok               bool
	}{
		{old, old, true},
		{old, both, true},      // step 1: receivers learn the new key
		{both, both, true},     // senders still sign with the old one
		{newFirst, both, true}, // step 2: senders sign with the new key
		{newFirst, old, false}, // a receiver skipping step 1 would drop it
		{old, newFirst, true},  // a sender still on step 1 is heard
		{onlyNew, newFirst, true},
		{old, onlyNew, false}, // step 3: the old key is gone
	}
	for i, s := range steps {
		m := receiver(t, s.receiver)
		r := m.accept(peerB, seal(t, s.sender, hb(uint64(i+1))), time.Now())
		if (r == "") != s.ok {
			t.Errorf("step %d: rejected %q, want accepted=%v", i, r, s.ok)
		}
	}
	// Members picks up a new ring at run time.
	m := receiver(t, old)
	m.SetKeys(both)
	if r := m.accept(peerB, seal(t, newFirst, hb(1)), time.Now()); r != "" {
		t.Fatalf("after SetKeys: %q", r)
	}
}

// TestClaimsBoundedByAddresses: claims for addresses the cluster does not
// have never reach the decision.
func TestClaimsBoundedByAddresses(t *testing.T) {
	k := testKeys(t, keyA)
	m := receiver(t, k)
	var claims []netip.Addr
	for i := range MaxClaims {
		claims = append(claims, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
	}
	claims = append(claims[:MaxClaims-1], addr(1))
	before := testutil.ToFloat64(metricClaimsDropped)
	if r := m.accept(peerB, seal(t, k, heartbeat{Version: 2, Node: "b", Incarnation: 1, Seq: 1, Claims: claims}), time.Now()); r != "" {
		t.Fatal(r)
	}
	if v := m.View(); fmt.Sprint(v.Claims["b"]) != fmt.Sprint([]netip.Addr{addr(1)}) {
		t.Fatalf("claims %v, want only the cluster's %s", v.Claims["b"], addr(1))
	}
	if d := testutil.ToFloat64(metricClaimsDropped) - before; d != MaxClaims-1 {
		t.Fatalf("dropped claims counted %v, want %d", d, MaxClaims-1)
	}
}
