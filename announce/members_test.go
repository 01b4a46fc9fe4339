package announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// fakeSpeaker records what the announcer tells it.
type fakeSpeaker struct {
	mu   sync.Mutex
	addr []netip.Addr
}

func (f *fakeSpeaker) Set(a []netip.Addr)      { f.mu.Lock(); f.addr = slices.Clone(a); f.mu.Unlock() }
func (f *fakeSpeaker) Reannounce([]netip.Addr) {}
func (f *fakeSpeaker) Ready() error            { return nil }
func (f *fakeSpeaker) get() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.addr)
}

type node struct {
	name    string
	members *Members
	ann     *Announcer
	speaker *fakeSpeaker
	cancel  context.CancelFunc
	done    chan struct{}
}

// cluster starts n forwarders' membership and announcers in-process on
// loopback UDP.
func cluster(t *testing.T, n int, in Inputs) []*node {
	t.Helper()
	peers := map[string]netip.AddrPort{}
	for i := range n {
		peers[fmt.Sprintf("n%d", i)] = freePort(t)
	}
	var nodes []*node
	for i := range n {
		name := fmt.Sprintf("n%d", i)
		m := NewMembers(MembersConfig{Self: name, Listen: peers[name], Interval: 20 * time.Millisecond, DeadAfter: 120 * time.Millisecond,
			Keys: testKeys(t, keyA)})
		m.SetPeers(peers)
		sp := &fakeSpeaker{}
		ann := NewAnnouncer(AnnouncerConfig{Self: name, Members: m, Speaker: sp})
		ann.SetInputs(in)
		ctx, cancel := context.WithCancel(context.Background())
		nd := &node{name: name, members: m, ann: ann, speaker: sp, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(nd.done)
			go m.Run(ctx)
			_ = ann.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-nd.done })
		nodes = append(nodes, nd)
	}
	return nodes
}

// announcers returns, per address, the nodes whose speaker announces it.
func announcers(nodes []*node) map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for _, n := range nodes {
		for _, a := range n.speaker.get() {
			out[a] = append(out[a], n.name)
		}
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
	return 0
}

func oneEach(nodes []*node, addrs []netip.Addr) bool {
	an := announcers(nodes)
	for _, a := range addrs {
		if len(an[a]) != 1 {
			return false
		}
	}
	return true
}

func TestClusterFailoverAndSteadyState(t *testing.T) {
	addrs := []netip.Addr{addr(1), addr(2), addr(3), addr(4)}
	in := Inputs{ReadyNodes: []string{"n0", "n1", "n2"}}
	for _, a := range addrs {
		in.Addresses = append(in.Addresses, Address{IP: a})
	}
	nodes := cluster(t, 3, in)
	waitFor(t, 3*time.Second, "one announcer per address", func() bool { return oneEach(nodes, addrs) })

	// Steady state: sample for a while; never two announcers, never none.
	for range 100 {
		an := announcers(nodes)
		for _, a := range addrs {
			if len(an[a]) != 1 {
				t.Fatalf("steady state: %s announced by %v", a, an[a])
			}
		}
		time.Sleep(3 * time.Millisecond)
	}

	// Kill the announcer of addr(1); the address moves within DeadAfter plus
	// a few heartbeat intervals.
	victim := announcers(nodes)[addr(1)][0]
	var rest []*node
	for _, n := range nodes {
		if n.name == victim {
			n.cancel()
			<-n.done
		} else {
			rest = append(rest, n)
		}
	}
	took := waitFor(t, 2*time.Second, "takeover", func() bool { return oneEach(rest, addrs) })
	if took > 400*time.Millisecond {
		t.Errorf("takeover took %s, want < 400ms with DeadAfter 120ms", took)
	}
	// Stickiness: addresses the survivors held did not move.
	for _, n := range rest {
		for _, a := range n.speaker.get() {
			if owners := n.ann.Owners(); owners[a] != n.name {
				t.Errorf("%s announces %s but believes %s owns it", n.name, a, owners[a])
			}
		}
	}
}

// TestPartitionBound isolates one node's heartbeats (it hears nobody and
// nobody hears it, while ARP would still flow) and measures how long two
// nodes announce one address: the minority node loses quorum after
// QuorumAfter, before the majority declares it dead after DeadAfter.
func TestPartitionBound(t *testing.T) {
	addrs := []netip.Addr{addr(1), addr(2), addr(3)}
	in := Inputs{ReadyNodes: []string{"n0", "n1", "n2"}}
	for _, a := range addrs {
		in.Addresses = append(in.Addresses, Address{IP: a})
	}
	nodes := cluster(t, 3, in)
	waitFor(t, 3*time.Second, "one announcer per address", func() bool { return oneEach(nodes, addrs) })
	isolated := nodes[0]
	for _, n := range nodes {
		if len(n.speaker.get()) > 0 {
			isolated = n
			break
		}
	}
	// Partition: the isolated node forgets its peers' addresses (so it
	// sends nothing) and the others drop it from their peer lists' targets
	// by pointing it at a dead port.
	dead := freePort(t)
	isolated.members.SetPeers(map[string]netip.AddrPort{"n0": dead, "n1": dead, "n2": dead})
	for _, n := range nodes {
		if n != isolated {
			m := map[string]netip.AddrPort{}
			for _, o := range nodes {
				m[o.name] = o.members.cfg.Listen
			}
			m[isolated.name] = dead
			n.members.SetPeers(m)
		}
	}
	// Stop the isolated node's inbound too: others no longer send to it,
	// and it no longer sends to them.
	var dual, worst time.Duration
	start := time.Now()
	var dualSince time.Time
	for time.Since(start) < time.Second {
		an := announcers(nodes)
		double := false
		for _, a := range addrs {
			if len(an[a]) > 1 {
				double = true
			}
		}
		now := time.Now()
		if double && dualSince.IsZero() {
			dualSince = now
		}
		if !double && !dualSince.IsZero() {
			dual = now.Sub(dualSince)
			worst = max(worst, dual)
			dualSince = time.Time{}
		}
		time.Sleep(time.Millisecond)
	}
	if !dualSince.IsZero() {
		t.Fatalf("two announcers still answer after 1s of partition: %v", announcers(nodes))
	}
	bound := isolated.members.cfg.Interval * 2
	if worst > bound {
		t.Errorf("two announcers for %s during the partition, want <= %s (QuorumAfter < DeadAfter)", worst, bound)
	}
	if len(isolated.speaker.get()) != 0 {
		t.Errorf("isolated node still announces %v without quorum", isolated.speaker.get())
	}
	var rest []*node
	for _, n := range nodes {
		if n != isolated {
			rest = append(rest, n)
		}
	}
	if !oneEach(rest, addrs) {
		t.Errorf("majority side does not carry every address: %v", announcers(rest))
	}
	t.Logf("longest dual announcement during partition: %s", worst)

	// Heal: the isolated node comes back after a hold-off and must neither
	// take an address back nor ever answer together with the holder.
	before := announcers(nodes)
	peers := map[string]netip.AddrPort{}
	for _, o := range nodes {
		peers[o.name] = o.members.cfg.Listen
	}
	for _, n := range nodes {
		n.members.SetPeers(peers)
	}
	start = time.Now()
	for time.Since(start) < time.Second {
		an := announcers(nodes)
		for _, a := range addrs {
			if len(an[a]) != 1 || an[a][0] != before[a][0] {
				t.Fatalf("after healing, %s is announced by %v, want only %v", a, an[a], before[a])
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func TestQuorumNeedsMajority(t *testing.T) {
	m := NewMembers(MembersConfig{Self: "a"})
	m.SetPeers(map[string]netip.AddrPort{"b": {}, "c": {}, "d": {}, "e": {}})
	now := time.Now()
	m.peers["b"].lastSeen = now
	if v := m.viewLocked(now); v.Quorum {
		t.Fatalf("2 of 5 heard: quorum %v", v.Quorum)
	}
	m.peers["c"].lastSeen = now
	if v := m.viewLocked(now); !v.Quorum || len(v.Alive) != 3 {
		t.Fatalf("3 of 5 heard: %+v", v)
	}
	two := NewMembers(MembersConfig{Self: "a"})
	two.SetPeers(map[string]netip.AddrPort{"b": {}})
	if v := two.viewLocked(now); !v.Quorum {
		t.Fatal("a two-node cluster must keep serving when its peer dies")
	}
}

// TestHeartbeatFromWrongAddressIgnored: a datagram naming a peer but sent
// from another address neither keeps that peer alive nor changes its claims.
func TestHeartbeatFromWrongAddressIgnored(t *testing.T) {
	self, peerAddr := freePort(t), netip.MustParseAddrPort("127.0.0.2:1")
	m := NewMembers(MembersConfig{Self: "a", Listen: self, Keys: testKeys(t, keyA)})
	m.SetPeers(map[string]netip.AddrPort{"b": peerAddr})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	time.Sleep(50 * time.Millisecond)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(self)) // from 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 5 {
		_, _ = c.Write(seal(t, testKeys(t, keyA), heartbeat{Version: 2, Node: "b", Incarnation: 1, Seq: 1, Claims: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}))
		time.Sleep(10 * time.Millisecond)
	}
	if v := m.View(); len(v.Alive) != 1 || len(v.Claims) != 0 {
		t.Fatalf("forged heartbeat accepted: %+v", v)
	}
}

// TestHandoverBreaksBeforeMake: when an owner loses an address while alive
// (its Node left Ready) and its peers learn of it before it does, nobody
// answers for the address until the old owner has let go: never two
// announcers. Before, the new owner took over at once while the old one
// still answered (the soak saw two MACs for one address).
func TestHandoverBreaksBeforeMake(t *testing.T) {
	addrs := []netip.Addr{addr(1), addr(2), addr(3), addr(4)}
	in := Inputs{ReadyNodes: []string{"n0", "n1", "n2"}}
	for _, a := range addrs {
		in.Addresses = append(in.Addresses, Address{IP: a})
	}
	nodes := cluster(t, 3, in)
	waitFor(t, 3*time.Second, "one announcer per address", func() bool { return oneEach(nodes, addrs) })
	oldOwner := announcers(nodes)[addr(1)][0]
	out := in
	out.ReadyNodes = slices.DeleteFunc(slices.Clone(in.ReadyNodes), func(n string) bool { return n == oldOwner })
	var owner *node
	for _, n := range nodes {
		if n.name == oldOwner {
			owner = n
			continue
		}
		n.ann.SetInputs(out) // the peers learn first
	}
	check := func(d time.Duration) {
		t.Helper()
		for start := time.Now(); time.Since(start) < d; time.Sleep(time.Millisecond) {
			for _, a := range addrs {
				if an := announcers(nodes)[a]; len(an) > 1 {
					t.Fatalf("%s announced by %v at once", a, an)
				}
			}
		}
	}
	check(80 * time.Millisecond) // less than DeadAfter: the old owner is still alive and claiming
	owner.ann.SetInputs(out)
	check(100 * time.Millisecond)
	moved := waitFor(t, time.Second, "addr(1) on another node", func() bool {
		an := announcers(nodes)[addr(1)]
		return len(an) == 1 && an[0] != oldOwner
	})
	t.Logf("address moved %s after the old owner let go", moved)
}

// TestOwnStallIsNotPeersDeath: a forwarder that was not scheduled for longer
// than --dead-after (a starved CPU share, a pause) must not judge its peers
// dead, nor its quorum lost, before it has read the heartbeats that waited in
// its socket meanwhile; a peer that really fell silent is still judged dead
// soon after.
func TestOwnStallIsNotPeersDeath(t *testing.T) {
	m := NewMembers(MembersConfig{Self: "a", Interval: 50 * time.Millisecond, DeadAfter: 250 * time.Millisecond, QuorumAfter: 175 * time.Millisecond})
	m.SetPeers(map[string]netip.AddrPort{"b": {}, "c": {}})
	t0 := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.looking = true // as Run's check loop
	// The check loop looks every 10 ms while both peers send.
	for at := time.Duration(0); at <= 100*time.Millisecond; at += 10 * time.Millisecond {
		m.peers["b"].lastSeen, m.peers["c"].lastSeen = t0.Add(at), t0.Add(at)
		v := m.viewLocked(t0.Add(at))
		m.alive, m.quorum = v.Alive, v.Quorum
	}
	// Then this process does not run for 400 ms.
	stalled := t0.Add(500 * time.Millisecond)
	if v := m.viewLocked(stalled); !slices.Equal(v.Alive, []string{"a", "b", "c"}) || !v.Quorum {
		t.Fatalf("right after its own stall: alive %v quorum %v, want [a b c] true", v.Alive, v.Quorum)
	}
	// It reads b's waiting heartbeat; c sent nothing.
	m.peers["b"].lastSeen = stalled.Add(5 * time.Millisecond)
	if v := m.viewLocked(stalled.Add(10 * time.Millisecond)); !slices.Equal(v.Alive, []string{"a", "b", "c"}) {
		t.Fatalf("during the hold: alive %v, want c still alive", v.Alive)
	}
	after := stalled.Add(60 * time.Millisecond)
	m.peers["b"].lastSeen = after
	if v := m.viewLocked(after); !slices.Equal(v.Alive, []string{"a", "b"}) || !v.Quorum {
		t.Fatalf("after the hold: alive %v quorum %v, want [a b] true (c silent for 460 ms)", v.Alive, v.Quorum)
	}
	// Without any stall, the silence is judged as before.
	m2 := NewMembers(MembersConfig{Self: "a", Interval: 50 * time.Millisecond, DeadAfter: 250 * time.Millisecond, QuorumAfter: 175 * time.Millisecond})
	m2.SetPeers(map[string]netip.AddrPort{"b": {}, "c": {}})
	m2.mu.Lock()
	defer m2.mu.Unlock()
	m2.looking = true
	m2.peers["b"].lastSeen, m2.peers["c"].lastSeen = t0, t0
	for at := time.Duration(0); at <= 300*time.Millisecond; at += 10 * time.Millisecond {
		v := m2.viewLocked(t0.Add(at))
		m2.alive, m2.quorum = v.Alive, v.Quorum
	}
	if !slices.Equal(m2.alive, []string{"a"}) || m2.quorum {
		t.Fatalf("peers silent for 300 ms while this node ran: alive %v quorum %v, want [a] false", m2.alive, m2.quorum)
	}
}

// TestStallsDoNotHideADeadPeer: a node that stalls again and again still
// judges a silent peer dead within twice --dead-after of its silence.
func TestStallsDoNotHideADeadPeer(t *testing.T) {
	m := NewMembers(MembersConfig{Self: "a", Interval: 50 * time.Millisecond, DeadAfter: 250 * time.Millisecond, QuorumAfter: 175 * time.Millisecond})
	m.SetPeers(map[string]netip.AddrPort{"b": {}, "c": {}})
	t0 := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.looking = true
	m.peers["b"].lastSeen, m.peers["c"].lastSeen = t0, t0
	v := m.viewLocked(t0)
	m.alive, m.quorum = v.Alive, v.Quorum
	// b keeps sending; c is dead. This node looks only every 60 ms: each
	// look follows a stall.
	for at := 60 * time.Millisecond; at <= 2*250*time.Millisecond+60*time.Millisecond; at += 60 * time.Millisecond {
		m.peers["b"].lastSeen = t0.Add(at)
		v = m.viewLocked(t0.Add(at))
		m.alive, m.quorum = v.Alive, v.Quorum
	}
	if !slices.Equal(m.alive, []string{"a", "b"}) || !m.quorum {
		t.Fatalf("c silent for over 500 ms behind stalls: alive %v quorum %v, want [a b] true", m.alive, m.quorum)
	}
}
