package announce

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// The heartbeat wire format, one UDP datagram:
//
//	"PHB2" | body (JSON heartbeat) | HMAC-SHA256(key, "PHB2" | body)
//
// The MAC covers everything before it. Receivers verify it with every key of
// their Keyring, so during a rotation old and new keys are both accepted.
const (
	heartbeatMagic = "PHB2"
	macSize        = sha256.Size
	// MaxDatagram is the largest heartbeat accepted; larger ones are
	// dropped as oversized before anything else is looked at.
	MaxDatagram = 60 << 10
	// MaxClaims is the most addresses one heartbeat may claim. A sender
	// holding more sends the first MaxClaims.
	MaxClaims = 1024
	// MinKeyLen is the shortest heartbeat key accepted, in bytes.
	MinKeyLen = 16
	// MaxEchoes is the most peers one heartbeat echoes. With more peers
	// heard, successive heartbeats take turns, so the datagram stays
	// well below one MTU (about 60 bytes per echo) however large the
	// cluster. Echoes beyond it in a received heartbeat are ignored.
	MaxEchoes = 8
)

// Reasons a datagram is rejected, the reason label of
// portico_forwarder_heartbeats_rejected_total.
const (
	RejectOversized     = "oversized"
	RejectMalformed     = "malformed"
	RejectUnauthentic   = "unauthenticated"
	RejectTooManyClaims = "too_many_claims"
	RejectUnknownPeer   = "unknown_peer"
	RejectWrongSource   = "wrong_source"
	RejectReplayed      = "replayed"
	RejectRateLimited   = "rate_limited"
)

// heartbeat is the signed body.
type heartbeat struct {
	Version int    `json:"v"`
	Node    string `json:"node"`
	// Incarnation is random per forwarder start.
	Incarnation uint64 `json:"inc"`
	// Seq grows with every datagram of one incarnation.
	Seq uint64 `json:"seq"`
	// Claims are the addresses the sender announces now.
	Claims []netip.Addr `json:"claims,omitempty"`
	// Standby: the sender is alive and counts towards quorum, but cannot
	// announce (its interface is down, or it is not yet a member).
	Standby bool `json:"standby,omitempty"`
	// Leaving is sent once by a forwarder shutting down, so its peers take
	// its addresses over at once instead of after DeadAfter.
	Leaving bool `json:"leaving,omitempty"`
	// Echoes return to peers the newest heartbeat heard from each, so they
	// measure the round trip (portico_forwarder_peer_rtt_seconds).
	// Optional: a forwarder of the release before sends none and ignores
	// them (an unknown JSON field), so the wire version stays 2; see
	// "Wire versions" in docs/local-mode.md.
	Echoes []echo `json:"echo,omitempty"`
}

// echo returns one peer's heartbeat, NTP-style: the peer computes the round
// trip as (time it receives the echo) - (time it sent Seq) - HeldMicros from
// its own clock alone, so the two nodes' clocks need not agree. The peer is
// named by its incarnation, which is random per forwarder start: shorter than
// a node name, and an echo of a previous start matches nothing.
type echo struct {
	Inc uint64 `json:"inc"`
	Seq uint64 `json:"seq"`
	// HeldMicros is the time from receiving Seq to sending this echo.
	HeldMicros int64 `json:"held_us"`
}

// Keyring holds the heartbeat keys: the first signs, every one verifies.
type Keyring struct {
	keys [][]byte
}

// InsecureKeyring signs with an empty, publicly known key: the MAC then
// only detects corruption. It is what --heartbeat-insecure uses.
var InsecureKeyring = &Keyring{keys: [][]byte{{}}}

// ParseKeys reads a key file: one key per line, the first signs; blank
// lines and lines starting with # are ignored. Keys are used as bytes, so
// any printable secret of at least MinKeyLen bytes works.
func ParseKeys(b []byte) (*Keyring, error) {
	k := &Keyring{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinKeyLen {
			return nil, fmt.Errorf("key on line %d is %d bytes, want at least %d", i+1, len(line), MinKeyLen)
		}
		k.keys = append(k.keys, []byte(line))
	}
	if len(k.keys) == 0 {
		return nil, errors.New("no key")
	}
	return k, nil
}

// LoadKeyFile reads and parses a key file.
func LoadKeyFile(path string) (*Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading heartbeat key file: %w", err)
	}
	k, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("heartbeat key file %s: %w", path, err)
	}
	return k, nil
}

// Equal reports whether both rings hold the same keys in the same order.
func (k *Keyring) Equal(o *Keyring) bool {
	if k == nil || o == nil || len(k.keys) != len(o.keys) {
		return k == o
	}
	for i := range k.keys {
		if !bytes.Equal(k.keys[i], o.keys[i]) {
			return false
		}
	}
	return true
}

func mac(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

// seal encodes and signs hb with the first key.
func (k *Keyring) seal(hb heartbeat) ([]byte, error) {
	body, err := json.Marshal(hb)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(heartbeatMagic), body...)
	return append(msg, mac(k.keys[0], msg)...), nil
}

// open verifies b with any key and decodes it. It returns the reject reason
// ("" when accepted). Anyone on the network can send a datagram: nothing is
// parsed before the MAC is verified.
func (k *Keyring) open(b []byte) (heartbeat, string) {
	if len(b) > MaxDatagram {
		return heartbeat{}, RejectOversized
	}
	if len(b) < len(heartbeatMagic)+macSize || string(b[:len(heartbeatMagic)]) != heartbeatMagic {
		return heartbeat{}, RejectMalformed
	}
	msg, sum := b[:len(b)-macSize], b[len(b)-macSize:]
	ok := false
	for _, key := range k.keys {
		if hmac.Equal(mac(key, msg), sum) {
			ok = true
			break
		}
	}
	if !ok {
		return heartbeat{}, RejectUnauthentic
	}
	hb, reason := parseHeartbeat(msg[len(heartbeatMagic):])
	return hb, reason
}

// parseHeartbeat decodes an authenticated body.
func parseHeartbeat(b []byte) (heartbeat, string) {
	var hb heartbeat
	if json.Unmarshal(b, &hb) != nil || hb.Version != 2 || hb.Node == "" {
		return heartbeat{}, RejectMalformed
	}
	if len(hb.Claims) > MaxClaims {
		return heartbeat{}, RejectTooManyClaims
	}
	for _, c := range hb.Claims {
		if !c.IsValid() {
			return heartbeat{}, RejectMalformed
		}
	}
	// Echoes only feed a metric: too many are cut rather than costing the
	// sender its liveness (a later release may send more).
	if len(hb.Echoes) > MaxEchoes {
		hb.Echoes = hb.Echoes[:MaxEchoes]
	}
	return hb, ""
}
