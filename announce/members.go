package announce

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// MembersConfig tunes the peer heartbeat.
type MembersConfig struct {
	// Self is this node's name.
	Self string
	// Listen is the UDP address heartbeats arrive on: the node's address
	// and the heartbeat port, e.g. 10.0.0.1:7473.
	Listen netip.AddrPort
	// Keys sign and verify heartbeats; Run refuses to start without.
	Keys *Keyring
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

type peer struct {
	addr     netip.AddrPort
	lastSeen time.Time
	claims   []netip.Addr
	standby  bool
	// inc and seq are the newest authenticated datagram's; older or equal
	// ones are replays.
	inc, seq uint64
	// retired are incarnations this peer had before, refused for good.
	retired []uint64
	limit   *rate.Limiter
}

// maxRetired bounds the incarnations remembered per peer.
const maxRetired = 16

// sentRing is how many of its own heartbeats a node remembers the send time
// of, to match the echoes: 64 cover 3 s at the default interval, far beyond
// DeadAfter.
const sentRing = 64

type sentAt struct {
	seq uint64
	at  time.Time
}

// Members runs the heartbeat among forwarders: it sends this node's claims to
// every peer each Interval and tracks who is alive. Every datagram is signed
// with the cluster's heartbeat key (Keyring) and carries a sequence number
// per incarnation; anything else is dropped and counted.
type Members struct {
	cfg  MembersConfig
	log  logr.Logger
	keys atomic.Pointer[Keyring]

	mu    sync.Mutex
	peers map[string]*peer
	// departed are peers removed from the set (their Node left Ready, say)
	// while still alive, with their last claims: they may still answer for
	// them until they learn of it, so no one takes those addresses over
	// before the claims lapse (break before make).
	departed map[string]departed
	claims   []netip.Addr
	standby  bool
	// known are the addresses the cluster has; claims of others are
	// ignored. nil until the announcer sets its first inputs.
	known  map[netip.Addr]bool
	alive  []string // last published alive set, sorted
	quorum bool
	// lastLook is when the membership was last judged; the check loop does
	// so every Interval/5. A longer gap means this process was not running
	// (CPU starvation, a stop-the-world pause): the heartbeats of that time
	// may still wait in the socket. Until holdUntil no peer is judged dead
	// and the quorum is not judged lost for a silence this node may not
	// have read yet (holdLocked).
	lastLook  time.Time
	holdUntil time.Time
	heldSince time.Time // start of the current run of holds, zero when none
	looking   bool      // the check loop runs: only then is a gap a stall
	conn      *net.UDPConn
	inc       uint64
	seq       uint64
	// sent are the send times of the last sentRing heartbeats, by seq.
	sent [sentRing]sentAt
	// echoNext is where the next heartbeat's echoes start among the
	// peers heard, when there are more than MaxEchoes.
	echoNext int

	changed chan struct{}
}

type departed struct {
	claims []netip.Addr
	until  time.Time
}

// NewMembers returns a heartbeat that is not yet running.
func NewMembers(cfg MembersConfig) *Members {
	cfg.defaults()
	var b [8]byte
	_, _ = rand.Read(b[:])
	m := &Members{cfg: cfg, peers: map[string]*peer{}, changed: make(chan struct{}, 1), inc: binary.BigEndian.Uint64(b[:])}
	if cfg.Keys != nil {
		m.keys.Store(cfg.Keys)
	}
	return m
}

// SetKeys replaces the heartbeat keys (a rotation): the first signs from now
// on, all verify.
func (m *Members) SetKeys(k *Keyring) { m.keys.Store(k) }

// Keys returns the heartbeat keys in use.
func (m *Members) Keys() *Keyring { return m.keys.Load() }

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
	now := time.Now()
	for name, p := range m.peers {
		if _, ok := peers[name]; !ok {
			if !p.lastSeen.IsZero() && now.Sub(p.lastSeen) <= m.cfg.DeadAfter && len(p.claims) > 0 {
				if m.departed == nil {
					m.departed = map[string]departed{}
				}
				m.departed[name] = departed{claims: slices.Clone(p.claims), until: now.Add(m.cfg.DeadAfter)}
				time.AfterFunc(m.cfg.DeadAfter, m.notify)
			}
			delete(m.peers, name)
		}
	}
	for name := range peers {
		delete(m.departed, name)
	}
	for name, addr := range peers {
		if name == m.cfg.Self {
			continue
		}
		if p, ok := m.peers[name]; ok {
			p.addr = addr
		} else {
			// A peer sends one datagram per Interval plus one per claim
			// change; four times that is generous.
			m.peers[name] = &peer{addr: addr, limit: rate.NewLimiter(rate.Every(m.cfg.Interval/4), 16)}
		}
	}
}

// SetAddresses sets the addresses the cluster has: claims for any other
// address are ignored.
func (m *Members) SetAddresses(addrs []netip.Addr) {
	known := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		known[a] = true
	}
	m.mu.Lock()
	changed := !maps.Equal(known, m.known)
	m.known = known
	m.mu.Unlock()
	if changed {
		m.notify()
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

// SetStandby tells peers whether this node can announce: a node on standby
// counts towards their quorum but is not eligible for any address.
func (m *Members) SetStandby(standby bool) {
	m.mu.Lock()
	same := m.standby == standby
	m.standby = standby
	m.mu.Unlock()
	if !same {
		m.send()
	}
}

// View is a snapshot of the membership.
type View struct {
	// Alive are the nodes heard within DeadAfter and not on standby, self
	// included, sorted.
	Alive []string
	// Quorum is true when this node hears a strict majority of its peer set
	// (self included) within QuorumAfter, or when the set has at most two
	// nodes (where a majority cannot survive any failure).
	Quorum bool
	// Claims maps each alive peer to the addresses it announces, among the
	// addresses the cluster has.
	Claims map[string][]netip.Addr
	// Peers is the size of the peer set, self included.
	Peers int
	// Departing maps nodes that left the peer set while alive to the
	// addresses they last claimed, for DeadAfter: they may still answer.
	Departing map[string][]netip.Addr
}

// View returns the current membership.
func (m *Members) View() View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.viewLocked(time.Now())
}

func (m *Members) viewLocked(now time.Time) View {
	v := View{Alive: []string{m.cfg.Self}, Claims: map[string][]netip.Addr{}}
	for name, d := range m.departed {
		if now.After(d.until) {
			delete(m.departed, name)
			continue
		}
		if v.Departing == nil {
			v.Departing = map[string][]netip.Addr{}
		}
		v.Departing[name] = d.claims
	}
	hold := m.holdLocked(now)
	heard := 1
	for name, p := range m.peers {
		age := now.Sub(p.lastSeen)
		if p.lastSeen.IsZero() {
			continue // never heard, or leaving
		}
		if hold && slices.Contains(m.alive, name) && !p.standby {
			// Alive when this node last looked: its silence since may
			// be this node's own stall.
			age = 0
		}
		if age <= m.cfg.DeadAfter && !p.standby {
			v.Alive = append(v.Alive, name)
			var claims []netip.Addr
			for _, c := range p.claims {
				if m.known[c] {
					claims = append(claims, c)
				}
			}
			v.Claims[name] = claims
		}
		if age <= m.cfg.QuorumAfter {
			heard++
		}
	}
	sort.Strings(v.Alive)
	v.Peers = len(m.peers) + 1
	v.Quorum = v.Peers <= 2 || heard*2 > v.Peers
	if hold && m.quorum && !v.Quorum {
		// Peers on standby count towards the quorum too.
		v.Quorum = true
	}
	return v
}

// holdLocked notes a stall of this process (no look at the membership for
// longer than Interval) and reports whether judgement is held: for Interval
// after each stall, and on while heartbeats still wait in the socket. The
// first datagrams read after a stall refresh the peers that kept sending. A
// run of holds lasts at most DeadAfter and is followed by one judgement on
// the real ages, so a peer that really died is judged dead at most DeadAfter
// later than without stalls, however often this node stalls.
func (m *Members) holdLocked(now time.Time) bool {
	if !m.looking {
		m.lastLook, m.heldSince = time.Time{}, time.Time{}
		return false
	}
	stalled := !m.lastLook.IsZero() && now.Sub(m.lastLook) > m.cfg.Interval
	if now.After(m.lastLook) {
		m.lastLook = now
	}
	if stalled {
		metricStalls.Inc()
		if m.heldSince.IsZero() {
			m.heldSince = now
		}
		m.holdUntil = now.Add(m.cfg.Interval)
	}
	if m.heldSince.IsZero() {
		return false
	}
	if now.Sub(m.heldSince) < m.cfg.DeadAfter && (now.Before(m.holdUntil) || m.backlogLocked() > 0) {
		return true
	}
	m.heldSince = time.Time{}
	return false
}

// backlogLocked returns the bytes waiting in the heartbeat socket.
func (m *Members) backlogLocked() int {
	if m.conn == nil {
		return 0
	}
	rc, err := m.conn.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n
}

// Ready returns nil when the heartbeat socket is open.
func (m *Members) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn == nil {
		return fmt.Errorf("heartbeat not listening on %s", m.cfg.Listen)
	}
	return nil
}

// listen opens the heartbeat socket. IP_FREEBIND lets it bind the node's
// address before that address is configured (an interface still down at
// start, an address being changed); datagrams arrive once it is.
func (m *Members) listen(ctx context.Context) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			_ = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		})
	}}
	pc, err := lc.ListenPacket(ctx, "udp", m.cfg.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("listening for heartbeats on %s: %w", m.cfg.Listen, err)
	}
	return pc.(*net.UDPConn), nil
}

// Run sends and receives heartbeats until ctx ends. A socket it cannot open
// is retried every second; the forwarder is not ready meanwhile.
func (m *Members) Run(ctx context.Context) error {
	m.log = logr.FromContextOrDiscard(ctx).WithName("members")
	if m.keys.Load() == nil {
		return errors.New("no heartbeat key: give --heartbeat-key-file (or --heartbeat-insecure)")
	}
	var conn *net.UDPConn
	for {
		var err error
		if conn, err = m.listen(ctx); err == nil {
			break
		}
		m.log.Error(err, "Opening the heartbeat socket; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	m.mu.Lock()
	m.conn, m.looking = conn, true
	m.mu.Unlock()
	go m.receive(conn)
	defer conn.Close()
	defer func() {
		m.mu.Lock()
		m.looking = false
		m.mu.Unlock()
	}()

	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	check := time.NewTicker(m.cfg.Interval / 5)
	defer check.Stop()
	m.send()
	for {
		select {
		case <-ctx.Done():
			m.sendLeaving()
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
	alive := len(v.Alive)
	if m.standby {
		alive-- // self cannot announce
	}
	m.mu.Unlock()
	metricPeers.Set(float64(v.Peers))
	metricPeersAlive.Set(float64(alive))
	metricQuorum.Set(b2f(v.Quorum))
	if changed {
		m.notify()
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *Members) send() { m.broadcast(false) }

// sendLeaving tells every peer this node stops, with empty claims.
func (m *Members) sendLeaving() { m.broadcast(true) }

func (m *Members) broadcast(leaving bool) {
	keys := m.keys.Load()
	m.mu.Lock()
	conn := m.conn
	if conn == nil || keys == nil {
		m.mu.Unlock()
		return
	}
	hb := m.nextHeartbeatLocked(time.Now(), leaving)
	msg, err := keys.seal(hb)
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
		if _, err := conn.WriteToUDPAddrPort(msg, t); err == nil {
			metricSent.Inc()
		}
	}
}

// nextHeartbeatLocked builds this node's next heartbeat, to be sent at now,
// and remembers when that sequence number was sent.
func (m *Members) nextHeartbeatLocked(now time.Time, leaving bool) heartbeat {
	m.seq++
	m.sent[m.seq%sentRing] = sentAt{seq: m.seq, at: now}
	hb := heartbeat{Version: 2, Node: m.cfg.Self, Incarnation: m.inc, Seq: m.seq, Leaving: leaving}
	if leaving {
		return hb
	}
	hb.Claims, hb.Standby = m.claims, m.standby
	if len(hb.Claims) > MaxClaims {
		hb.Claims = hb.Claims[:MaxClaims]
	}
	hb.Echoes = m.echoesLocked(now)
	return hb
}

// echoesLocked returns the echoes of the peers heard within DeadAfter, at
// most MaxEchoes, taking turns when there are more.
func (m *Members) echoesLocked(now time.Time) []echo {
	var heard []string
	for name, p := range m.peers {
		if held := now.Sub(p.lastSeen); !p.lastSeen.IsZero() && held >= 0 && held <= m.cfg.DeadAfter {
			heard = append(heard, name)
		}
	}
	if len(heard) == 0 {
		return nil
	}
	sort.Strings(heard)
	n := min(len(heard), MaxEchoes)
	echoes := make([]echo, 0, n)
	for i := range n {
		p := m.peers[heard[(m.echoNext+i)%len(heard)]]
		echoes = append(echoes, echo{Inc: p.inc, Seq: p.seq, HeldMicros: now.Sub(p.lastSeen).Microseconds()})
	}
	if len(heard) > MaxEchoes {
		m.echoNext = (m.echoNext + n) % len(heard)
	}
	return echoes
}

// observeEchoLocked observes the round trip of this node's heartbeat that
// echoes in a peer's heartbeat received at now carries back, if any: only an
// echo of this incarnation and of a heartbeat still remembered, whose held
// time fits within the trip.
func (m *Members) observeEchoLocked(echoes []echo, now time.Time) {
	for _, e := range echoes {
		if e.Inc != m.inc {
			continue
		}
		s := m.sent[e.Seq%sentRing]
		trip := now.Sub(s.at)
		// Compared in microseconds: a held time converted to a Duration
		// could overflow into a plausible value.
		if s.seq != e.Seq || s.at.IsZero() || e.HeldMicros < 0 || e.HeldMicros > trip.Microseconds() {
			return
		}
		metricPeerRTT.Observe((trip - time.Duration(e.HeldMicros)*time.Microsecond).Seconds())
		return
	}
}

func (m *Members) receive(conn *net.UDPConn) {
	// One byte more than the limit, so an oversized datagram is seen as
	// such rather than truncated to a valid-looking prefix.
	buf := make([]byte, MaxDatagram+1)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if reason := m.accept(from.Addr().Unmap(), buf[:n], time.Now()); reason != "" {
			m.log.V(4).Info("Dropped a heartbeat", "from", from, "reason", reason)
		}
	}
}

// accept verifies one datagram from address from and applies it. It returns
// the reason it was rejected, "" when it was accepted, and counts it.
func (m *Members) accept(from netip.Addr, b []byte, now time.Time) (reason string) {
	defer func() {
		if reason != "" {
			metricRejected.WithLabelValues(reason).Inc()
		} else {
			metricReceived.Inc()
		}
	}()
	keys := m.keys.Load()
	if keys == nil {
		return RejectUnauthentic
	}
	hb, reason := keys.open(b)
	if reason != "" {
		return reason
	}
	m.mu.Lock()
	p, ok := m.peers[hb.Node]
	switch {
	case !ok:
		// The peer set comes from the cluster (or flags), not from
		// whoever holds the key.
		m.mu.Unlock()
		return RejectUnknownPeer
	case p.addr.Addr().Unmap() != from:
		m.mu.Unlock()
		return RejectWrongSource
	case hb.Incarnation == p.inc && hb.Seq <= p.seq, slices.Contains(p.retired, hb.Incarnation):
		m.mu.Unlock()
		return RejectReplayed
	case !p.limit.AllowN(now, 1):
		m.mu.Unlock()
		return RejectRateLimited
	}
	if hb.Incarnation != p.inc {
		// A restarted peer (or the first datagram heard from it).
		if p.inc != 0 {
			p.retired = append(p.retired, p.inc)
			if len(p.retired) > maxRetired {
				p.retired = p.retired[1:]
			}
		}
		p.inc = hb.Incarnation
	}
	p.seq = hb.Seq
	m.observeEchoLocked(hb.Echoes, now)
	if hb.Leaving {
		p.lastSeen, p.claims = time.Time{}, nil
		m.mu.Unlock()
		m.log.V(1).Info("Peer is leaving", "peer", hb.Node)
		m.evaluate()
		m.notify()
		return ""
	}
	if m.known != nil {
		for _, c := range hb.Claims {
			if !m.known[c] {
				metricClaimsDropped.Inc()
			}
		}
	}
	wasDead := p.lastSeen.IsZero() || now.Sub(p.lastSeen) > m.cfg.DeadAfter
	changed := !slices.Equal(p.claims, hb.Claims) || p.standby != hb.Standby
	p.lastSeen, p.claims, p.standby = now, hb.Claims, hb.Standby
	m.mu.Unlock()
	if wasDead {
		m.evaluate()
	}
	if changed {
		m.notify()
	}
	return ""
}
