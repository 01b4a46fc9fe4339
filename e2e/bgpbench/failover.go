package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portico-lb/portico/dataplane/dptest"
)

// routeEvent is one change of a BGP route in the router's kernel table.
type routeEvent struct {
	at       time.Time
	dst      netip.Addr
	withNode bool // the cut node is still among its next hops
}

// routeWatch records the router's kernel route changes (netlink
// notifications, so each change is timed when the kernel makes it, without
// polling every route).
type routeWatch struct {
	node netip.Addr
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	events []routeEvent
}

func (b *bench) watchRoutes(node netip.Addr) (*routeWatch, error) {
	h, err := netns.GetFromName(b.router.Host.NS)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	w := &routeWatch{node: node, done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 4096)
	if err := netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
		Namespace: &h, ReceiveBufferSize: 8 << 20,
		ErrorCallback: func(err error) {
			select {
			case <-w.done: // the socket closes on stop
			default:
				fmt.Println("failover: route watch:", err)
			}
		},
	}); err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for u := range ch {
			now := time.Now()
			if u.Protocol != unix.RTPROT_BGP || u.Dst == nil {
				continue
			}
			dst, ok := netip.AddrFromSlice(u.Dst.IP)
			if !ok {
				continue
			}
			withNode := false
			if u.Type == unix.RTM_NEWROUTE {
				withNode = slices.Contains(hopsOf(u.Route), node)
			}
			w.mu.Lock()
			w.events = append(w.events, routeEvent{at: now, dst: dst.Unmap(), withNode: withNode})
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// waitServed waits until 30 probes in a row are answered, by every node's
// pod.
func (b *bench) waitServed(target netip.AddrPort, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		pods := map[string]bool{}
		answered := 0
		for range 30 {
			r, err := dptest.AskUDP(b.outside, target, 300*time.Millisecond)
			if err != nil {
				break
			}
			answered++
			pods[r.Server] = true
		}
		if answered == 30 && len(pods) == len(b.c.Nodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served by every node after %s (last try: %d of 30 probes answered, by %d pods)", target, within, answered, len(pods))
		}
		time.Sleep(time.Second)
	}
}

func hopsOf(r netlink.Route) []netip.Addr {
	var hops []netip.Addr
	if g, ok := netip.AddrFromSlice(r.Gw); ok && r.Gw != nil {
		hops = append(hops, g.Unmap())
	}
	for _, nh := range r.MultiPath {
		if g, ok := netip.AddrFromSlice(nh.Gw); ok && nh.Gw != nil {
			hops = append(hops, g.Unmap())
		}
	}
	return hops
}

// stop ends the watch and returns its events.
func (w *routeWatch) stop() []routeEvent {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// probe is one UDP request of the client.
type probe struct {
	sent   time.Time
	fd     int
	ok     bool
	server string // the pod that answered ("pod-2")
	// refused: an ICMP error came back instead (port unreachable: the
	// node that got it had no rule for the address yet, or no route).
	refused bool
}

// prober sends the client's probes: every 10 ms a datagram from a new
// socket (a new source port, so ECMP spreads them over the nodes), from
// one goroutine locked on a thread in the client's namespace. Replies are
// collected at the end from each socket's receive queue: a probe is lost
// when its answer never arrived, not when a goroutine of this process was
// too late to read it within a deadline (on a loaded machine, reads with a
// deadline timed out on answers that had arrived and counted them lost).
type prober struct {
	stop chan struct{}
	done chan error

	mu     sync.Mutex
	probes []probe
}

func (b *bench) startProbes(target netip.AddrPort) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan error, 1)}
	sa := &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()}
	go func() {
		p.done <- b.outside.Do(func() error {
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return nil
				case <-t.C:
				}
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("probe socket: %w", err)
				}
				if err := unix.Connect(fd, sa); err != nil {
					unix.Close(fd)
					return fmt.Errorf("probe connect: %w", err)
				}
				if _, err := unix.Write(fd, []byte("hello")); err != nil {
					unix.Close(fd)
					return fmt.Errorf("probe write: %w", err)
				}
				p.mu.Lock()
				p.probes = append(p.probes, probe{sent: time.Now(), fd: fd})
				p.mu.Unlock()
			}
		})
	}()
	return p
}

// finish stops sending, gives the last probes 300 ms to be answered, reads
// every socket's answer and closes it.
func (p *prober) finish() ([]probe, error) {
	close(p.stop)
	err := <-p.done
	time.Sleep(300 * time.Millisecond)
	buf := make([]byte, 1500)
	for i := range p.probes {
		pr := &p.probes[i]
		// A pending ICMP error is reported first; an answer may follow.
		for range 2 {
			n, _, rerr := unix.Recvfrom(pr.fd, buf, unix.MSG_DONTWAIT)
			if rerr == nil {
				pr.ok = true
				if f := strings.Fields(string(buf[:n])); len(f) > 0 {
					pr.server = f[0]
				}
				break
			}
			if rerr != unix.EAGAIN {
				pr.refused = true
			}
		}
		unix.Close(pr.fd)
	}
	return p.probes, err
}

// failoverRun is the timeline of one cut, each time from the cut.
type failoverRun struct {
	gap time.Duration // the client's outage: the cut to the last lost probe, plus 10 ms
	// The router's BFD session with the node going down and its BGP
	// session following (from FRR's logs; 0 when not found).
	bfdDown, bgpDown time.Duration
	// The longest pause between two probes sent after the cut: the
	// resolution of the gap (a stalled client sends nothing).
	maxSpacing time.Duration
	// The router's kernel: its first route to lose the node, the probed
	// route, and the last; and how many routes lost it.
	first, probed, last time.Duration
	probedRank, changed int
	lost                int // probes lost
	lostAfterRoute      int // probes lost although sent after the probed route lost the node
}

func (r failoverRun) String() string {
	return fmt.Sprintf("client outage %d ms (%d probes lost, %d sent after the route changed, probes at most %d ms apart); "+
		"router: BFD down at %d ms, BGP down at %d ms, kernel: first route without node 1 at %d ms, the probed route at %d ms (%d of %d), last at %d ms",
		r.gap.Milliseconds(), r.lost, r.lostAfterRoute, r.maxSpacing.Milliseconds(), r.bfdDown.Milliseconds(), r.bgpDown.Milliseconds(),
		r.first.Milliseconds(), r.probed.Milliseconds(), r.probedRank, r.changed, r.last.Milliseconds())
}

// analyse lays the probes beside the router's route changes.
func analyse(cut time.Time, addr netip.Addr, events []routeEvent, probes []probe) failoverRun {
	var r failoverRun
	gone := map[netip.Addr]bool{}
	var probedAt time.Time
	for _, e := range events {
		if e.at.Before(cut) || e.withNode || gone[e.dst] {
			continue
		}
		gone[e.dst] = true
		r.changed++
		d := e.at.Sub(cut)
		if r.changed == 1 {
			r.first = d
		}
		r.last = d
		if e.dst == addr {
			r.probed, r.probedRank, probedAt = d, r.changed, e.at
		}
	}
	var lastLost, prev time.Time
	for _, p := range probes {
		if p.sent.Before(cut) {
			continue
		}
		if !prev.IsZero() {
			r.maxSpacing = max(r.maxSpacing, p.sent.Sub(prev))
		}
		prev = p.sent
		if p.ok {
			continue
		}
		r.lost++
		if p.sent.After(lastLost) {
			lastLost = p.sent
		}
		if !probedAt.IsZero() && p.sent.After(probedAt) {
			r.lostAfterRoute++
		}
	}
	if !lastLost.IsZero() {
		r.gap = lastLost.Sub(cut) + 10*time.Millisecond
	}
	return r
}

func (b *bench) failover(addr netip.Addr) ([]time.Duration, error) {
	target := netip.AddrPortFrom(addr, 53)
	n1 := b.c.Nodes[0]
	n1Addr := n1.Host.IPv4.Addr()
	var gaps []time.Duration
	for run := 1; run <= *runs; run++ {
		if err := b.waitHops([]netip.Addr{addr}, len(b.c.Nodes), 2*time.Minute); err != nil {
			return nil, err
		}
		// The route can be in place before every node's data plane
		// serves the address (the forwarders advertise it as soon as the
		// Service has it, nftables may follow later on a loaded
		// machine): probes lost to that would be counted as failover.
		if err := b.waitServed(target, 2*time.Minute); err != nil {
			return nil, fmt.Errorf("run %d: %w", run, err)
		}
		probes := b.startProbes(target)
		time.Sleep(500 * time.Millisecond)
		watch, err := b.watchRoutes(n1Addr)
		if err != nil {
			return nil, err
		}
		cut := time.Now()
		if err := n1.Host.SetCable(false); err != nil {
			return nil, err
		}
		// Wait for the route to lose n1, then 1 s of probes.
		for {
			rs, err := b.routes()
			if err != nil {
				return nil, err
			}
			if !slices.Contains(rs[addr], n1Addr) {
				break
			}
			if time.Since(cut) > time.Minute {
				return nil, fmt.Errorf("run %d: n1 still a next hop a minute after its cable was cut", run)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Second)
		sent, err := probes.finish()
		if err != nil {
			return nil, err
		}
		r := analyse(cut, addr, watch.stop(), sent)
		peer := "peer:" + n1Addr.String() + " "
		r.bfdDown = sinceOrZero(frrEvent(filepath.Join(*logDir, "frr-bfdd.log"), cut, "state-change", peer, "-> down"), cut)
		r.bgpDown = sinceOrZero(frrEvent(filepath.Join(*logDir, "frr-bgpd.log"), cut, "ADJCHANGE", "neighbor "+n1Addr.String()+"(", "Down"), cut)
		fmt.Printf("run %d: node 1 cut off, %s\n", run, r)
		if err := writeTimeline(filepath.Join(*logDir, fmt.Sprintf("failover-%d.txt", run)), cut, sent); err != nil {
			return nil, err
		}
		gaps = append(gaps, r.gap)
		if err := n1.Host.SetCable(true); err != nil {
			return nil, err
		}
	}
	return gaps, b.waitHops([]netip.Addr{addr}, len(b.c.Nodes), 2*time.Minute)
}

// frrEvent returns when the first line of an FRR log at or after since
// contains every one of words (FRR stamps lines with "log timestamp
// precision 3": 2006/01/02 15:04:05.000, local time), or the zero time.
func frrEvent(file string, since time.Time, words ...string) time.Time {
	b, err := os.ReadFile(file)
	if err != nil {
		return time.Time{}
	}
	const layout = "2006/01/02 15:04:05.000"
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) < len(layout) {
			continue
		}
		match := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		// FRR's stamp is truncated to the millisecond.
		if t, err := time.ParseInLocation(layout, line[:len(layout)], time.Local); err == nil && !t.Before(since.Truncate(time.Millisecond)) {
			return t
		}
	}
	return time.Time{}
}

func sinceOrZero(t, from time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(from)
}

// writeTimeline writes one line per probe: milliseconds from the cut to its
// sending and the pod that answered it ("lost" when none did).
func writeTimeline(file string, cut time.Time, probes []probe) error {
	var sb strings.Builder
	for _, p := range probes {
		who := p.server
		switch {
		case !p.ok && p.refused:
			who = "refused"
		case !p.ok:
			who = "lost"
		}
		fmt.Fprintf(&sb, "%.1f %s\n", float64(p.sent.Sub(cut).Microseconds())/1000, who)
	}
	return os.WriteFile(file, []byte(sb.String()), 0o644)
}
