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
	"golang.org/x/net/ipv6"
)

// Port is the destination port of single-hop BFD control packets (RFC 5881
// 4); TTL is the TTL (IPv4) or hop limit (IPv6) they are sent with and must
// arrive with (RFC 5881 5).
const (
	Port = 3784
	TTL  = 255
)

// tick is how often sessions are checked for packets to send and expired
// detection times.
const tick = 5 * time.Millisecond

// Manager runs the node's single-hop BFD sessions over UDP, IPv4 and IPv6
// (RFC 5881): one listener on port 3784 per family and one sending socket
// per session (source port in 49152-65535, TTL or hop limit 255). Packets
// that arrive with another TTL or hop limit, or fail Parse, are dropped. It
// is safe for concurrent use.
type Manager struct {
	// Locals are the node's addresses to run BFD from, at most one per
	// family. For a family without one the listener takes every address
	// of the family (port 3784) and each session's packets leave from the
	// address the kernel picks to reach the peer (as the BGP session's
	// do when it has no local address).
	Locals []netip.Addr
	Log    logr.Logger
	// OnChange is called (without locks held) when a session's state
	// changes.
	OnChange func(peer netip.Addr, st State)

	mu       sync.Mutex
	sessions map[netip.Addr]*entry
	nextDisc uint32
	// listenErr says why a family has no listener (Run could not open
	// it); Add refuses its peers.
	listenErr map[bool]error // by Is4
}

type entry struct {
	s    *Session
	conn *net.UDPConn
	peer netip.Addr
	// removed sessions send AdminDown, then close.
	removed bool
}

// local is the configured address of a's family (invalid: none).
func (m *Manager) local(a netip.Addr) netip.Addr {
	for _, l := range m.Locals {
		if l.Is4() == a.Is4() {
			return l
		}
	}
	return netip.Addr{}
}

// checkPeer refuses addresses a single-hop session cannot run with.
func checkPeer(peer netip.Addr) error {
	if !peer.IsValid() || peer.IsUnspecified() || peer.IsMulticast() {
		return fmt.Errorf("BFD peer %s is not a unicast address", peer)
	}
	if peer.IsLinkLocalUnicast() {
		// Its sockets would need the interface (a zone), which BGPPeer
		// addresses do not carry.
		return fmt.Errorf("BFD with link-local peer %s is not implemented", peer)
	}
	return nil
}

// Add starts a session with peer unless one runs.
func (m *Manager) Add(peer netip.Addr, cfg Config) error {
	peer = peer.Unmap().WithZone("")
	if err := checkPeer(peer); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.listenErr[peer.Is4()]; err != nil {
		return err
	}
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
// TTL or hop limit 255 (RFC 5881 5).
func (m *Manager) dial(peer netip.Addr) (*net.UDPConn, error) {
	network := map[bool]string{true: "udp4", false: "udp6"}[peer.Is4()]
	var lastErr error
	for range 64 {
		laddr := &net.UDPAddr{Port: 49152 + rand.IntN(65536-49152)}
		if l := m.local(peer); l.IsValid() {
			laddr.IP = l.AsSlice()
		}
		c, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, Port)))
		if err != nil {
			lastErr = err
			continue
		}
		if peer.Is4() {
			err = ipv4.NewConn(c).SetTTL(TTL)
		} else {
			err = ipv6.NewConn(c).SetHopLimit(TTL)
		}
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("setting TTL/hop limit 255: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("no free source port for BFD with %s: %w", peer, lastErr)
}

// Remove ends the session with peer: it tells the peer AdminDown (so the
// peer does not take the end for a failure), then closes.
func (m *Manager) Remove(peer netip.Addr) {
	peer = peer.Unmap().WithZone("")
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.sessions[peer]; ok && !e.removed {
		e.removed = true
		e.s.Shutdown()
	}
}

// State returns the session's state with peer.
func (m *Manager) State(peer netip.Addr) (State, bool) {
	peer = peer.Unmap().WithZone("")
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.sessions[peer]
	if !ok || e.removed {
		return Down, false
	}
	return e.s.State(), true
}

// Run listens and drives the sessions until ctx ends; then every session
// sends AdminDown before Run returns. A family whose listener cannot be
// opened (IPv6 disabled on the node) has no sessions; Run fails only when
// neither family can listen.
func (m *Manager) Run(ctx context.Context) error {
	var closers []func() error
	done := make(chan struct{})
	running := 0
	var errs []error
	for _, is4 := range []bool{true, false} {
		read, closeFn, err := m.listen(is4)
		if err != nil {
			m.Log.Info("BFD unavailable for a family", "ipv4", is4, "reason", err.Error())
			errs = append(errs, err)
			m.mu.Lock()
			if m.listenErr == nil {
				m.listenErr = map[bool]error{}
			}
			m.listenErr[is4] = err
			m.mu.Unlock()
			continue
		}
		closers = append(closers, closeFn)
		running++
		go func() {
			defer func() { done <- struct{}{} }()
			m.receive(read)
		}()
	}
	if running == 0 {
		return errors.Join(errs...)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			for _, c := range closers {
				_ = c()
			}
			for range running {
				<-done
			}
			return nil
		case now := <-t.C:
			m.send(now)
		}
	}
}

// readFunc reads one packet: its length, its TTL or hop limit and its
// source.
type readFunc func(buf []byte) (n, hops int, src netip.Addr, err error)

// listen opens the family's listener on port 3784 (on the family's local
// address, or every address of the family), asking the kernel for each
// packet's TTL or hop limit.
func (m *Manager) listen(is4 bool) (readFunc, func() error, error) {
	network, addr := "udp4", netip.IPv4Unspecified()
	if !is4 {
		network, addr = "udp6", netip.IPv6Unspecified()
	}
	for _, l := range m.Locals {
		if l.Is4() == is4 {
			addr = l
		}
	}
	lc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, Port)))
	if err != nil {
		return nil, nil, fmt.Errorf("BFD listener on %s: %w", netip.AddrPortFrom(addr, Port), err)
	}
	if is4 {
		pc := ipv4.NewPacketConn(lc)
		if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
			_ = lc.Close()
			return nil, nil, fmt.Errorf("BFD listener: receiving TTLs: %w", err)
		}
		return func(buf []byte) (int, int, netip.Addr, error) {
			n, cm, src, err := pc.ReadFrom(buf)
			hops := -1
			if cm != nil {
				hops = cm.TTL
			}
			return n, hops, udpSource(src), err
		}, lc.Close, nil
	}
	pc := ipv6.NewPacketConn(lc)
	if err := pc.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		_ = lc.Close()
		return nil, nil, fmt.Errorf("BFD listener: receiving hop limits: %w", err)
	}
	return func(buf []byte) (int, int, netip.Addr, error) {
		n, cm, src, err := pc.ReadFrom(buf)
		hops := -1
		if cm != nil {
			hops = cm.HopLimit
		}
		return n, hops, udpSource(src), err
	}, lc.Close, nil
}

func udpSource(a net.Addr) netip.Addr {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.Addr{}
	}
	return ua.AddrPort().Addr().Unmap().WithZone("")
}

func (m *Manager) receive(read readFunc) {
	buf := make([]byte, 512)
	for {
		n, hops, from, err := read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if hops != TTL || !from.IsValid() {
			continue // not from a neighbor one hop away (RFC 5881 5)
		}
		p, err := Parse(buf[:n])
		if err != nil {
			m.Log.V(2).Info("Dropping BFD packet", "from", from.String(), "reason", err.Error())
			continue
		}
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
