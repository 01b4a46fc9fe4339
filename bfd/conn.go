package bfd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/ipv4"
)

// Port is the destination port of single-hop BFD control packets (RFC 5881
// 4); TTL is the TTL they are sent with and must arrive with (RFC 5881 5).
const (
	Port = 3784
	TTL  = 255
)

// tick is how often sessions are checked for packets to send and expired
// detection times.
const tick = 5 * time.Millisecond

// Manager runs the node's single-hop IPv4 BFD sessions over UDP: one
// listener on Local:3784 and one sending socket per session (source port in
// 49152-65535, TTL 255). Packets that arrive with another TTL or fail Parse
// are dropped. It is safe for concurrent use.
type Manager struct {
	Local netip.Addr
	Log   logr.Logger
	// OnChange is called (without locks held) when a session's state
	// changes.
	OnChange func(peer netip.Addr, st State)

	mu       sync.Mutex
	sessions map[netip.Addr]*entry
	nextDisc uint32
}

type entry struct {
	s    *Session
	conn *net.UDPConn
	peer netip.Addr
	// removed sessions send AdminDown, then close.
	removed bool
}

// Add starts a session with peer (IPv4) unless one runs.
func (m *Manager) Add(peer netip.Addr, cfg Config) error {
	if !peer.Is4() || !m.Local.Is4() {
		return errors.New("BFD is implemented for IPv4 peers only")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions == nil {
		m.sessions = map[netip.Addr]*entry{}
		m.nextDisc = rand.Uint32()
	}
	if e, ok := m.sessions[peer]; ok && !e.removed {
		return nil
	} else if ok {
		_ = e.conn.Close()
	}
	conn, err := m.dial(peer)
	if err != nil {
		return err
	}
	m.nextDisc++
	if m.nextDisc == 0 {
		m.nextDisc++
	}
	m.sessions[peer] = &entry{s: NewSession(m.nextDisc, cfg), conn: conn, peer: peer}
	return nil
}

// dial opens the sending socket: a source port in 49152-65535 (RFC 5881 4),
// TTL 255.
func (m *Manager) dial(peer netip.Addr) (*net.UDPConn, error) {
	var lastErr error
	for range 64 {
		port := 49152 + rand.IntN(65536-49152)
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(m.Local, uint16(port))),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, Port)))
		if err != nil {
			lastErr = err
			continue
		}
		if err := ipv4.NewConn(c).SetTTL(TTL); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("setting TTL 255: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("no free source port for BFD with %s: %w", peer, lastErr)
}

// Remove ends the session with peer: it tells the peer AdminDown (so the
// peer does not take the end for a failure), then closes.
func (m *Manager) Remove(peer netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.sessions[peer]; ok && !e.removed {
		e.removed = true
		e.s.Shutdown()
	}
}

// State returns the session's state with peer.
func (m *Manager) State(peer netip.Addr) (State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.sessions[peer]
	if !ok || e.removed {
		return Down, false
	}
	return e.s.State(), true
}

// Run listens and drives the sessions until ctx ends; then every session
// sends AdminDown before Run returns.
func (m *Manager) Run(ctx context.Context) error {
	lc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(m.Local, Port)))
	if err != nil {
		return fmt.Errorf("BFD listener on %s:%d: %w", m.Local, Port, err)
	}
	pc := ipv4.NewPacketConn(lc)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		_ = lc.Close()
		return fmt.Errorf("BFD listener: receiving TTLs: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.receive(pc)
	}()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			_ = lc.Close()
			<-done
			return nil
		case now := <-t.C:
			m.send(now)
		}
	}
}

func (m *Manager) receive(pc *ipv4.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if cm == nil || cm.TTL != TTL {
			continue // not from a neighbor one hop away (RFC 5881 5)
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		p, err := Parse(buf[:n])
		if err != nil {
			m.Log.V(2).Info("Dropping BFD packet", "from", ua.String(), "reason", err.Error())
			continue
		}
		from := ua.AddrPort().Addr().Unmap()
		m.mu.Lock()
		e := m.sessions[from]
		if e != nil && p.YourDisc != 0 && p.YourDisc != e.s.LocalDisc {
			e = nil // RFC 5880 6.8.6: your discriminator selects the session
		}
		var changed bool
		var st State
		var diag Diag
		if e != nil && !e.removed {
			changed = e.s.Receive(p, time.Now())
			st, diag = e.s.State(), e.s.diag
		}
		m.mu.Unlock()
		if changed {
			m.changed(from, st, p.State, diag)
		}
	}
}

func (m *Manager) send(now time.Time) {
	type change struct {
		peer   netip.Addr
		st     State
		remote State
		diag   Diag
	}
	var changes []change
	m.mu.Lock()
	for peer, e := range m.sessions {
		p, changed := e.s.Next(now)
		if p != nil {
			_, _ = e.conn.Write(p.Marshal())
		}
		if changed {
			changes = append(changes, change{peer, e.s.State(), e.s.remote, e.s.diag})
		}
		if e.removed && e.s.Done() {
			_ = e.conn.Close()
			delete(m.sessions, peer)
		}
	}
	m.mu.Unlock()
	for _, c := range changes {
		m.changed(c.peer, c.st, c.remote, c.diag)
	}
}

// changed logs a state change with what caused it: the peer's state (a
// packet) or the local diagnostic (1: the detection time expired).
func (m *Manager) changed(peer netip.Addr, st, remote State, diag Diag) {
	m.Log.Info("BFD session changed", "peer", peer.String(), "state", st.String(), "peerState", remote.String(), "diag", int(diag))
	if m.OnChange != nil {
		m.OnChange(peer, st)
	}
}

// shutdown sends AdminDown on every session at once (three times, as
// Session.Shutdown promises) and closes them.
func (m *Manager) shutdown() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for peer, e := range m.sessions {
		e.s.Shutdown()
		for !e.s.Done() {
			e.s.lastTx = time.Time{}
			if p, _ := e.s.Next(time.Now()); p != nil {
				_, _ = e.conn.Write(p.Marshal())
			}
		}
		_ = e.conn.Close()
		delete(m.sessions, peer)
	}
}
