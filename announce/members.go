package announce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// MembersConfig tunes the peer heartbeat.
type MembersConfig struct {
	// Self is this node's name.
	Self string
	// Listen is the UDP address heartbeats arrive on, e.g. 0.0.0.0:7473.
	Listen netip.AddrPort
	// Interval between heartbeats to every peer. Default 50ms.
	Interval time.Duration
	// DeadAfter declares a silent peer dead; the survivors take its
	// addresses over. Default 250ms.
	DeadAfter time.Duration
	// QuorumAfter: a node that has not heard a majority of its peers for
	// this long stops announcing. It is shorter than DeadAfter, so in a
	// clean partition the minority side falls silent before the majority
	// side takes over. Default 175ms.
	QuorumAfter time.Duration
}

func (c *MembersConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = 50 * time.Millisecond
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 5 * c.Interval
	}
	if c.QuorumAfter <= 0 || c.QuorumAfter >= c.DeadAfter {
		c.QuorumAfter = c.DeadAfter * 7 / 10
	}
}

// heartbeat is the wire message, one UDP datagram.
type heartbeat struct {
	Version int    `json:"v"`
	Node    string `json:"node"`
	// Incarnation changes when the forwarder restarts.
	Incarnation int64  `json:"inc"`
	Seq         uint64 `json:"seq"`
	// Claims are the addresses the sender announces now.
	Claims []netip.Addr `json:"claims,omitempty"`
	// Leaving is sent once by a forwarder shutting down, so its peers take
	// its addresses over at once instead of after DeadAfter.
	Leaving bool `json:"leaving,omitempty"`
}

type peer struct {
	addr     netip.AddrPort
	lastSeen time.Time
	claims   []netip.Addr
	inc      int64
}

// Members runs the heartbeat among forwarders: it sends this node's claims to
// every peer each Interval and tracks who is alive.
type Members struct {
	cfg MembersConfig
	log logr.Logger

	mu     sync.Mutex
	peers  map[string]*peer
	claims []netip.Addr
	alive  []string // last published alive set, sorted
	quorum bool
	conn   *net.UDPConn
	inc    int64
	seq    uint64

	changed chan struct{}
}

// NewMembers returns a heartbeat that is not yet running.
func NewMembers(cfg MembersConfig) *Members {
	cfg.defaults()
	return &Members{cfg: cfg, peers: map[string]*peer{}, changed: make(chan struct{}, 1), inc: time.Now().UnixNano()}
}

// Config returns the effective configuration.
func (m *Members) Config() MembersConfig { return m.cfg }

// Changed signals (coalesced) when the alive set, quorum or a peer's claims
// change.
func (m *Members) Changed() <-chan struct{} { return m.changed }

func (m *Members) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// SetPeers replaces the peer set: node name -> heartbeat address. Peers keep
// their liveness across calls.
func (m *Members) SetPeers(peers map[string]netip.AddrPort) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.peers {
		if _, ok := peers[name]; !ok {
			delete(m.peers, name)
		}
	}
	for name, addr := range peers {
		if name == m.cfg.Self {
			continue
		}
		if p, ok := m.peers[name]; ok {
			p.addr = addr
		} else {
			m.peers[name] = &peer{addr: addr}
		}
	}
}

// SetClaims sets the addresses this node announces, sent in every
// heartbeat; a change is sent at once.
func (m *Members) SetClaims(claims []netip.Addr) {
	m.mu.Lock()
	same := slices.Equal(m.claims, claims)
	m.claims = slices.Clone(claims)
	m.mu.Unlock()
	if !same {
		m.send()
	}
}

// View is a snapshot of the membership.
type View struct {
	// Alive are the nodes heard within DeadAfter, self included, sorted.
	Alive []string
	// Quorum is true when this node hears a strict majority of its peer set
	// (self included) within QuorumAfter, or when the set has at most two
	// nodes (where a majority cannot survive any failure).
	Quorum bool
	// Claims maps each alive peer to the addresses it announces.
	Claims map[string][]netip.Addr
}

// View returns the current membership.
func (m *Members) View() View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.viewLocked(time.Now())
}

func (m *Members) viewLocked(now time.Time) View {
	v := View{Alive: []string{m.cfg.Self}, Claims: map[string][]netip.Addr{}}
	heard := 1
	for name, p := range m.peers {
		age := now.Sub(p.lastSeen)
		if p.lastSeen.IsZero() {
			continue
		}
		if age <= m.cfg.DeadAfter {
			v.Alive = append(v.Alive, name)
			v.Claims[name] = p.claims
		}
		if age <= m.cfg.QuorumAfter {
			heard++
		}
	}
	sort.Strings(v.Alive)
	total := len(m.peers) + 1
	v.Quorum = total <= 2 || heard*2 > total
	return v
}

// Run sends and receives heartbeats until ctx ends.
func (m *Members) Run(ctx context.Context) error {
	m.log = logr.FromContextOrDiscard(ctx).WithName("members")
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(m.cfg.Listen))
	if err != nil {
		return fmt.Errorf("listening for heartbeats on %s: %w", m.cfg.Listen, err)
	}
	m.mu.Lock()
	m.conn = conn
	m.mu.Unlock()
	go m.receive(conn)
	defer conn.Close()

	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	check := time.NewTicker(m.cfg.Interval / 5)
	defer check.Stop()
	m.send()
	for {
		select {
		case <-ctx.Done():
			m.sendLeaving(conn)
			return nil
		case <-tick.C:
			m.send()
		case <-check.C:
			m.evaluate()
		}
	}
}

// evaluate publishes a change of the alive set or quorum.
func (m *Members) evaluate() {
	m.mu.Lock()
	v := m.viewLocked(time.Now())
	changed := !slices.Equal(v.Alive, m.alive) || v.Quorum != m.quorum
	if changed {
		m.log.V(1).Info("Membership changed", "alive", v.Alive, "quorum", v.Quorum)
	}
	m.alive, m.quorum = v.Alive, v.Quorum
	m.mu.Unlock()
	if changed {
		m.notify()
	}
}

func (m *Members) send() {
	m.mu.Lock()
	conn := m.conn
	if conn == nil {
		m.mu.Unlock()
		return
	}
	m.seq++
	msg, err := json.Marshal(heartbeat{Version: 1, Node: m.cfg.Self, Incarnation: m.inc, Seq: m.seq, Claims: m.claims})
	targets := make([]netip.AddrPort, 0, len(m.peers))
	for _, p := range m.peers {
		targets = append(targets, p.addr)
	}
	m.mu.Unlock()
	if err != nil {
		return
	}
	for _, t := range targets {
		// A failed send is a lost heartbeat; the receiver's timeout
		// handles it.
		_, _ = conn.WriteToUDPAddrPort(msg, t)
	}
}

// sendLeaving tells every peer this node stops, with empty claims.
func (m *Members) sendLeaving(conn *net.UDPConn) {
	m.mu.Lock()
	m.seq++
	msg, err := json.Marshal(heartbeat{Version: 1, Node: m.cfg.Self, Incarnation: m.inc, Seq: m.seq, Leaving: true})
	targets := make([]netip.AddrPort, 0, len(m.peers))
	for _, p := range m.peers {
		targets = append(targets, p.addr)
	}
	m.mu.Unlock()
	if err != nil {
		return
	}
	for _, t := range targets {
		_, _ = conn.WriteToUDPAddrPort(msg, t)
	}
}

func (m *Members) receive(conn *net.UDPConn) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		hb, ok := parseHeartbeat(buf[:n])
		if !ok {
			continue
		}
		m.heard(from.Addr().Unmap(), hb)
	}
}

// parseHeartbeat decodes a datagram; anyone on the network can send one.
func parseHeartbeat(b []byte) (heartbeat, bool) {
	var hb heartbeat
	if json.Unmarshal(b, &hb) != nil || hb.Version != 1 || hb.Node == "" || len(hb.Claims) > 1<<16 {
		return heartbeat{}, false
	}
	for _, c := range hb.Claims {
		if !c.IsValid() {
			return heartbeat{}, false
		}
	}
	return hb, true
}

func (m *Members) heard(from netip.Addr, hb heartbeat) {
	m.mu.Lock()
	p, ok := m.peers[hb.Node]
	if !ok || p.addr.Addr().Unmap() != from {
		// Unknown senders, and known names from the wrong address, are
		// ignored: the peer set comes from the cluster (or flags), not
		// from whoever sends a datagram.
		m.mu.Unlock()
		return
	}
	if hb.Leaving {
		p.lastSeen, p.claims = time.Time{}, nil
		m.mu.Unlock()
		m.log.V(1).Info("Peer is leaving", "peer", hb.Node)
		m.evaluate()
		m.notify()
		return
	}
	wasDead := p.lastSeen.IsZero() || time.Since(p.lastSeen) > m.cfg.DeadAfter
	claimsChanged := !slices.Equal(p.claims, hb.Claims) || p.inc != hb.Incarnation
	p.lastSeen, p.claims, p.inc = time.Now(), hb.Claims, hb.Incarnation
	m.mu.Unlock()
	if wasDead {
		m.evaluate()
	}
	if claimsChanged {
		m.notify()
	}
}
