package bfd

import (
	"testing"
	"time"
)

// pair runs two sessions against each other on a simulated clock, each
// packet delivered after delay unless drop says otherwise.
type pair struct {
	a, b *Session
	now  time.Time
}

func (p *pair) step(d time.Duration, deliverA, deliverB bool) {
	end := p.now.Add(d)
	for ; p.now.Before(end); p.now = p.now.Add(time.Millisecond) {
		if out, _ := p.a.Next(p.now); out != nil && deliverA {
			pk, err := Parse(out.Marshal())
			if err != nil {
				panic(err)
			}
			p.b.Receive(pk, p.now)
		}
		if out, _ := p.b.Next(p.now); out != nil && deliverB {
			pk, err := Parse(out.Marshal())
			if err != nil {
				panic(err)
			}
			p.a.Receive(pk, p.now)
		}
	}
}

var fast = Config{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}

// TestSessionUpAndDetection: two sessions come Up through the three-way
// handshake, switch from the slow (1 s) to the configured 100 ms rate by a
// Poll Sequence, and a session whose peer falls silent goes Down after the
// detection time (3 x 100 ms), not after the slow rate; the peer that hears
// Down follows.
func TestSessionUpAndDetection(t *testing.T) {
	p := &pair{a: NewSession(1, fast), b: NewSession(2, fast), now: time.Unix(1000, 0)}
	p.step(3*time.Second, true, true)
	if p.a.State() != Up || p.b.State() != Up {
		t.Fatalf("states %s %s after 3s, want Up Up", p.a.State(), p.b.State())
	}
	if p.a.advertisedTx != 100*time.Millisecond || p.a.polling || p.b.polling {
		t.Fatalf("a advertises %s (polling %v/%v), want 100ms after the Poll Sequence", p.a.advertisedTx, p.a.polling, p.b.polling)
	}
	if d := p.a.DetectionTime(); d != 300*time.Millisecond {
		t.Fatalf("detection time %s, want 300ms", d)
	}
	// b falls silent (a node dies): a declares it down within 300 ms
	// plus one millisecond tick.
	start := p.now
	for p.a.State() == Up {
		p.step(time.Millisecond, true, false)
		if p.now.Sub(start) > 400*time.Millisecond {
			t.Fatal("a still Up 400ms after b fell silent")
		}
	}
	if p.a.diag != DiagDetectionExpired {
		t.Errorf("diag %d, want detection expired", p.a.diag)
	}
	t.Logf("detected after %s", p.now.Sub(start))
	// b hears again: both come back Up.
	p.step(4*time.Second, true, true)
	if p.a.State() != Up || p.b.State() != Up {
		t.Fatalf("states %s %s after recovery", p.a.State(), p.b.State())
	}
}

// TestSessionAdminDown: a session shut down tells its peer AdminDown a few
// times and then falls silent; the peer goes Down with "neighbor signalled"
// and does not count the silence as a failure of a session it already took
// down.
func TestSessionAdminDown(t *testing.T) {
	p := &pair{a: NewSession(1, fast), b: NewSession(2, fast), now: time.Unix(1000, 0)}
	p.step(3*time.Second, true, true)
	p.a.Shutdown()
	p.step(2*time.Second, true, true)
	if p.b.State() != Down || p.b.diag != DiagNeighborSignalled {
		t.Fatalf("peer %s diag %d, want Down, neighbor signalled", p.b.State(), p.b.diag)
	}
	if !p.a.Done() {
		t.Fatal("shut down session still sending")
	}
	if out, _ := p.a.Next(p.now.Add(time.Hour)); out != nil {
		t.Fatalf("sent %+v after telling the peer", out)
	}
}

// TestSessionSlowWhileDown: a session that is not Up advertises and uses at
// least one second between packets (RFC 5880 6.8.3).
func TestSessionSlowWhileDown(t *testing.T) {
	s := NewSession(1, fast)
	now := time.Unix(1000, 0)
	var sent []time.Time
	for i := 0; i < 5000; i++ {
		if out, _ := s.Next(now); out != nil {
			if out.DesiredMinTx < time.Second || out.State != Down {
				t.Fatalf("packet %+v while Down", out)
			}
			sent = append(sent, now)
		}
		now = now.Add(time.Millisecond)
	}
	if len(sent) < 5 || len(sent) > 7 {
		t.Fatalf("%d packets in 5s while Down, want about one per 0.75-1s", len(sent))
	}
}

// TestSessionFollowsFasterPeerRx: the transmit interval is
// max(DesiredMinTx, the peer's RequiredMinRx) at every moment (RFC 5880
// 6.8.7), so when the peer lowers its RequiredMinRx the next packet comes
// at the new interval. FRR advertises 1 s until it is Up, then polls with
// 100 ms and expects a packet within its 300 ms detection time; a session
// that kept the packet it had planned at the old 1 s interval fell silent
// for 750-1000 ms, and FRR declared it down right after every BGP session
// came up (bench-bgp's "flap after establishment").
func TestSessionFollowsFasterPeerRx(t *testing.T) {
	s := NewSession(1, fast)
	now := time.Unix(1000, 0)
	peer := Packet{State: Init, DetectMult: 3, MyDisc: 9, YourDisc: 1, DesiredMinTx: time.Second, RequiredMinRx: time.Second}
	s.Receive(peer, now)
	if s.State() != Up {
		t.Fatalf("state %s after the peer's Init, want Up", s.State())
	}
	if out, _ := s.Next(now); out == nil || !out.Poll {
		t.Fatalf("sent %+v, want the Poll at the new rate", out)
	}
	now = now.Add(time.Millisecond)
	peer.State, peer.Poll, peer.DesiredMinTx, peer.RequiredMinRx = Up, true, 100*time.Millisecond, 100*time.Millisecond
	s.Receive(peer, now)
	if out, _ := s.Next(now); out == nil || !out.Final {
		t.Fatalf("sent %+v, want the Final at once", out)
	}
	last := now
	peer.Poll = false
	for end := now.Add(time.Second); now.Before(end); now = now.Add(time.Millisecond) {
		if now.Sub(s.lastRx) >= 100*time.Millisecond {
			s.Receive(peer, now) // the peer keeps its 100 ms
		}
		if out, _ := s.Next(now); out != nil {
			if gap := now.Sub(last); gap > 100*time.Millisecond {
				t.Fatalf("packet %s after the previous one, want at most the peer's 100ms", gap)
			}
			last = now
		}
		if gap := now.Sub(last); gap > 100*time.Millisecond {
			t.Fatalf("nothing sent for %s after the peer asked for 100ms (its detection time is 300ms)", gap)
		}
	}
}
