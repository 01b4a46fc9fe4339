package bfd

import (
	"math/rand/v2"
	"time"
)

// SlowTx is the slowest transmit interval a session advertises while it is
// not Up (RFC 5880 6.8.3: at least one second).
const SlowTx = time.Second

// Config is a session's timers.
type Config struct {
	// DesiredMinTx is how often this end wants to send once Up.
	DesiredMinTx time.Duration
	// RequiredMinRx is the fastest this end accepts packets.
	RequiredMinRx time.Duration
	// DetectMult: the peer declares this end down after that many
	// intervals without a packet.
	DetectMult uint8
}

// Session is one asynchronous-mode BFD session (RFC 5880 6.8). It is not
// safe for concurrent use, and has no clock of its own: the caller passes
// the time to Receive and Next, so it is tested without sleeping.
type Session struct {
	cfg Config

	LocalDisc  uint32
	remoteDisc uint32
	state      State
	remote     State
	diag       Diag

	remoteMinRx time.Duration
	remoteMinTx time.Duration
	remoteMult  uint8
	lastRx      time.Time
	// lastTx is when the last periodic packet went out and txPct the
	// jitter drawn for the next (percent of the interval): the interval
	// itself is computed when it is due, so a change of either side's
	// timers applies to the very next packet (RFC 5880 6.8.7).
	lastTx        time.Time
	txPct         int
	polling       bool // a Poll Sequence is under way
	sendFinal     bool
	advertisedTx  time.Duration
	adminDown     bool
	sentAdminDown int
}

// NewSession returns a session in state Down with the local discriminator
// disc (nonzero, unique per node).
func NewSession(disc uint32, cfg Config) *Session {
	s := &Session{cfg: cfg, LocalDisc: disc, state: Down, remoteMinRx: time.Microsecond}
	s.advertisedTx = s.desiredTx()
	return s
}

// State is the session's state.
func (s *Session) State() State { return s.state }

// desiredTx is bfd.DesiredMinTxInterval: the configured one while Up, at
// least SlowTx otherwise.
func (s *Session) desiredTx() time.Duration {
	if s.state == Up {
		return s.cfg.DesiredMinTx
	}
	return max(s.cfg.DesiredMinTx, SlowTx)
}

// DetectionTime is how long the session waits for a packet before it
// declares the peer down (RFC 5880 6.8.4, asynchronous mode).
func (s *Session) DetectionTime() time.Duration {
	return time.Duration(s.remoteMult) * max(s.cfg.RequiredMinRx, s.remoteMinTx)
}

func (s *Session) setState(st State, d Diag) {
	s.state, s.diag = st, d
	if st == Down {
		s.polling = false
	}
	if tx := s.desiredTx(); tx != s.advertisedTx {
		// The interval changes: tell the peer with a Poll Sequence so it
		// recomputes its detection time (RFC 5880 6.8.3).
		s.advertisedTx = tx
		s.polling = true
		// Send the Poll at once, and from now on at the new rate: the
		// peer may already time out at it.
		s.lastTx = time.Time{}
	}
}

// Receive processes a packet from the peer (already accepted by Parse and
// demultiplexed to this session) at now, following RFC 5880 6.8.6. It
// reports whether the session's state changed.
func (s *Session) Receive(p Packet, now time.Time) bool {
	before := s.state
	if s.adminDown {
		return false
	}
	s.remoteDisc = p.MyDisc
	s.remote = p.State
	s.remoteMinTx = p.DesiredMinTx
	s.remoteMinRx = max(p.RequiredMinRx, time.Microsecond)
	s.remoteMult = p.DetectMult
	s.lastRx = now
	if p.Final {
		s.polling = false
	}
	if p.Poll {
		s.sendFinal = true
	}
	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.setState(Down, DiagNeighborSignalled)
		}
	case s.state == Down:
		switch p.State {
		case Down:
			s.setState(Init, DiagNone)
		case Init:
			s.setState(Up, DiagNone)
		}
	case s.state == Init:
		if p.State == Init || p.State == Up {
			s.setState(Up, DiagNone)
		}
	case s.state == Up:
		if p.State == Down {
			s.setState(Down, DiagNeighborSignalled)
		}
	}
	return s.state != before
}

// Shutdown moves the session to AdminDown; it keeps sending a few AdminDown
// packets so the peer does not take the silence for a failure (RFC 5882
// 3.2), then falls silent.
func (s *Session) Shutdown() {
	s.adminDown = true
	s.state, s.diag = AdminDown, DiagAdminDown
}

// Done reports whether an administratively down session has told its peer.
func (s *Session) Done() bool { return s.adminDown && s.sentAdminDown >= 3 }

// Next returns the packet to send at now, if one is due, and whether the
// state changed because the detection time expired. Call it often (every
// few milliseconds) or at NextDue.
func (s *Session) Next(now time.Time) (out *Packet, changed bool) {
	if !s.adminDown && (s.state == Init || s.state == Up) && s.remoteMult > 0 && now.Sub(s.lastRx) > s.DetectionTime() {
		s.setState(Down, DiagDetectionExpired)
		s.remoteDisc = 0
		s.remote = Down
		changed = true
	}
	if s.Done() {
		return nil, changed
	}
	due := s.txDue()
	if !s.sendFinal && now.Before(due) {
		return nil, changed
	}
	p := &Packet{Diag: s.diag, State: s.state, Poll: s.polling && !s.sendFinal, Final: s.sendFinal, DetectMult: s.cfg.DetectMult,
		MyDisc: s.LocalDisc, YourDisc: s.remoteDisc, DesiredMinTx: s.advertisedTx, RequiredMinRx: s.cfg.RequiredMinRx}
	if s.adminDown {
		s.sentAdminDown++
	}
	if !s.sendFinal || !now.Before(due) {
		s.lastTx, s.txPct = now, s.jitterPct()
	}
	s.sendFinal = false
	return p, changed
}

// NextDue is when Next has a packet to send next (or the detection time
// ends, whichever is first).
func (s *Session) NextDue() time.Time {
	due := s.txDue()
	if (s.state == Init || s.state == Up) && s.remoteMult > 0 {
		if d := s.lastRx.Add(s.DetectionTime()); d.Before(due) {
			due = d
		}
	}
	return due
}

// txDue is when the next periodic packet is due: the interval
// max(bfd.DesiredMinTxInterval, bfd.RemoteMinRxInterval) as they are now,
// jittered as drawn at the last packet.
func (s *Session) txDue() time.Time {
	if s.lastTx.IsZero() {
		return time.Time{}
	}
	return s.lastTx.Add(max(s.advertisedTx, s.remoteMinRx) * time.Duration(s.txPct) / 100)
}

// jitterPct applies RFC 5880 6.8.7: 75-100% of the interval, 75-90% with a
// detect multiplier of 1.
func (s *Session) jitterPct() int {
	top := 25
	if s.cfg.DetectMult == 1 {
		top = 15
	}
	return 75 + rand.IntN(top+1)
}
