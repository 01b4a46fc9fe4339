// Command failoverbench measures how long clients lose a local
// load-balancer address when the node announcing it dies.
//
// It builds a lab (netlab) of three node namespaces and two client
// namespaces on one bridge, and runs the real portico-forwarder binary in
// each node in static mode (fixed address and peers, no apiserver: the
// announcement and heartbeat code is the same as in cluster mode). Every
// node serves a UDP echo on the address. One client sends a probe every
// 10 ms and records replies; it learns the new node only from the
// forwarder's gratuitous ARP. A second client sends an ARP who-has every
// 10 ms and records every answering MAC, to measure double announcement.
// Each run kills the announcing node (SIGKILL to its forwarder and its cable
// pulled at once), measures the gap in echo replies, then restores it.
// Three partitions of the heartbeat alone (blackhole routes between the
// announcing node and its peers, Ethernet intact) follow; dual_announce_ms
// covers the whole benchmark.
//
// Then the stress phase: busy-loop processes (--stress-procs, default four
// per CPU, each pinned to one CPU) saturate the machine for --stress while no
// node fails. Every takeover or release a forwarder counts on /metrics, and
// every change of the node answering the client, is a move although no node
// failed: false_moves is the largest of those counts. With the machine still
// saturated, --stress-runs more kills measure failover under load.
//
// The last line of output is
// failover: runs=N p50_ms=N p99_ms=N max_ms=N dual_announce_ms=N false_moves=N stress_runs=N stress_p99_ms=N
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"

	"github.com/portico-lb/portico/e2e/netlab"
	"github.com/portico-lb/portico/internal/testenv"
)

var (
	runs      = flag.Int("runs", 20, "Failovers to measure.")
	forwarder = flag.String("forwarder", "", "portico-forwarder binary; built from ./cmd/portico-forwarder when empty.")
	interval  = flag.Duration("probe-interval", 10*time.Millisecond, "Client probe interval.")
	parts     = flag.Int("partitions", 3, "Heartbeat-only partitions to run after the failovers.")
	logDir    = flag.String("log-dir", "", "Directory for the forwarders' logs (discarded when empty).")

	stressFor   = flag.Duration("stress", 60*time.Second, "Stress phase: how long the CPUs stay saturated while no node fails (0 skips the phase).")
	stressProcs = flag.Int("stress-procs", 4*runtime.NumCPU(), "Stress phase: busy-loop processes, pinned round-robin to the CPUs.")
	stressRuns  = flag.Int("stress-runs", 5, "Stress phase: failovers measured while the CPUs are still saturated.")
	fwdCPU      = flag.Int("forwarder-millicpu", 100, "Stress phase: each forwarder runs in a CPU cgroup weighted as a pod requesting this much CPU (the DaemonSet's request).")
	busyCPU     = flag.Int("busy-millicpu", 2000, "Stress phase: the busy loops run in one CPU cgroup weighted as a pod requesting this much CPU; 0 runs everything in the benchmark's own cgroup.")
)

var vip = netip.MustParseAddr("10.77.0.200")

const echoPort = 9000

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "failoverbench:", err)
		os.Exit(1)
	}
}

type node struct {
	host *netlab.Host
	proc *testenv.Process
}

func run() (err error) {
	bin := *forwarder
	if bin == "" {
		dir, err := os.MkdirTemp("", "failoverbench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "portico-forwarder")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/portico-forwarder").CombinedOutput(); err != nil {
			return fmt.Errorf("building forwarder: %w\n%s", err, out)
		}
	}
	keyDir, err := os.MkdirTemp("", "failoverbench-key")
	if err != nil {
		return err
	}
	defer os.RemoveAll(keyDir)
	keyFile := filepath.Join(keyDir, "heartbeat.key")
	if err := os.WriteFile(keyFile, []byte(rand.Text()+"\n"), 0o600); err != nil {
		return err
	}
	lab, err := netlab.New()
	if err != nil {
		return err
	}
	defer lab.Close()

	var nodes []*node
	for i := range 3 {
		h, err := lab.AddHost(fmt.Sprintf("n%d", i+1), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)}), 24), netip.Prefix{})
		if err != nil {
			return err
		}
		if _, err := h.IP("addr", "add", vip.String()+"/32", "dev", "lo"); err != nil {
			return err
		}
		if err := serveEcho(h); err != nil {
			return err
		}
		nodes = append(nodes, &node{host: h})
	}
	client, err := lab.AddHost("cl", netip.MustParsePrefix("10.77.0.100/24"), netip.Prefix{})
	if err != nil {
		return err
	}
	watcher, err := lab.AddHost("arp", netip.MustParsePrefix("10.77.0.101/24"), netip.Prefix{})
	if err != nil {
		return err
	}
	var procs []*testenv.Process
	// groups, during the stress phase, weighs the forwarders' CPU against
	// the busy loops' as the kubelet weighs pods by their requests.
	var groups *cpuGroups
	start := func(n *node) error {
		args := []string{"--node-name", n.host.Name, "--interface", n.host.Link, "--static-address", vip.String(),
			"--heartbeat-address", n.host.IPv4.Addr().String(), "--heartbeat-key-file", keyFile}
		for _, o := range nodes {
			if o != n {
				args = append(args, "--peer", o.host.Name+"="+o.host.IPv4.Addr().String())
			}
		}
		log := ""
		if *logDir != "" {
			log = filepath.Join(*logDir, n.host.Name+".log")
		}
		p, err := testenv.StartProcess("forwarder "+n.host.Name, n.host.Command(bin, append(args, "--zap-log-level=1")...), testenv.ProcessOptions{Log: log, CleanExit: true})
		if err != nil {
			return err
		}
		n.proc = p
		procs = append(procs, p)
		if groups != nil {
			return groups.add("forwarder-"+n.host.Name, *fwdCPU, p.Pid())
		}
		return nil
	}
	for _, n := range nodes {
		if err := start(n); err != nil {
			return err
		}
	}
	// Every forwarder this run started, killed ones included: any that
	// panicked or exited on its own fails the benchmark.
	defer func() {
		var errs []error
		for _, p := range procs {
			if err := p.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("%w\n%s", err, p.Tail(30)))
			}
		}
		if len(errs) > 0 {
			err = errors.Join(append([]error{err}, errs...)...)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probe, err := startProber(ctx, client)
	if err != nil {
		return err
	}
	arps, err := startARPWatch(ctx, watcher)
	if err != nil {
		return err
	}
	if _, err := probe.waitServing(5 * time.Second); err != nil {
		return fmt.Errorf("address never served: %w", err)
	}

	// failovers kills the announcing node n times and returns the
	// client-visible outages in milliseconds.
	failovers := func(label string, n int) ([]float64, error) {
		var outages []float64
		for i := range n {
			time.Sleep(300 * time.Millisecond)
			owner, err := probe.waitServing(3 * time.Second)
			if err != nil {
				return nil, fmt.Errorf("%s %d: %w", label, i+1, err)
			}
			victim := byName(nodes, owner)
			killedAt := time.Now()
			victim.proc.Kill()
			if err := victim.host.SetCable(false); err != nil {
				return nil, err
			}
			gap, newOwner, err := probe.gapAfter(killedAt, owner, 5*time.Second)
			if err != nil {
				return nil, fmt.Errorf("%s %d: no failover from %s: %w", label, i+1, owner, err)
			}
			outages = append(outages, float64(gap)/float64(time.Millisecond))
			fmt.Printf("%s %2d: %s died, %s took over, client outage %.0f ms\n", label, i+1, owner, newOwner, outages[len(outages)-1])
			if err := victim.host.SetCable(true); err != nil {
				return nil, err
			}
			if err := start(victim); err != nil {
				return nil, err
			}
			// Let the restarted forwarder warm up and rejoin: every node
			// hears all three again (a starved node takes longer to start).
			time.Sleep(700 * time.Millisecond)
			if err := waitRejoined(nodes, 20*time.Second); err != nil {
				return nil, fmt.Errorf("%s %d: %s restarted: %w", label, i+1, owner, err)
			}
		}
		return outages, nil
	}
	outages, err := failovers("run", *runs)
	if err != nil {
		return err
	}
	// A partition of the heartbeat only: the announcing node and its peers
	// drop each other's packets while the client still reaches everyone by
	// ARP. The minority node must fall silent before the majority takes
	// over; the ARP watcher measures any overlap.
	for i := range *parts {
		owner, err := probe.waitServing(3 * time.Second)
		if err != nil {
			return fmt.Errorf("partition %d: %w", i+1, err)
		}
		victim := byName(nodes, owner)
		if err := partition(victim, nodes, "add"); err != nil {
			return err
		}
		time.Sleep(1500 * time.Millisecond)
		now, err := probe.waitServing(time.Second)
		if err != nil {
			return fmt.Errorf("partition %d: nobody serves: %w", i+1, err)
		}
		fmt.Printf("partition %d: %s isolated from its peers, %s serves\n", i+1, owner, now)
		if now == owner {
			return fmt.Errorf("partition %d: the isolated node %s still serves after 1.5s", i+1, owner)
		}
		if err := partition(victim, nodes, "del"); err != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	falseMoves, stressed := 0, []float64(nil)
	if *stressFor > 0 {
		placeBusy := func(int) error { return nil }
		where := "the benchmark's cgroup"
		if *busyCPU > 0 {
			if groups, err = newCPUGroups(lab.ID(), *stressProcs); err != nil {
				return fmt.Errorf("stress phase: %w (--busy-millicpu=0 runs without cgroups)", err)
			}
			defer groups.close()
			for _, n := range nodes {
				if err := groups.add("forwarder-"+n.host.Name, *fwdCPU, n.proc.Pid()); err != nil {
					return err
				}
			}
			// The probes and echo servers of this process measure; they
			// must not starve behind the machine's other load either.
			if err := groups.add("bench", 4000, os.Getpid()); err != nil {
				return err
			}
			placeBusy = func(pid int) error { return groups.add("busy", *busyCPU, pid) }
			where = fmt.Sprintf("CPU cgroups: each forwarder weighted as %dm, the busy loops as %dm", *fwdCPU, *busyCPU)
		}
		stop, err := startBusy(*stressProcs, *stressFor+time.Duration(*stressRuns)*10*time.Second+time.Minute, placeBusy)
		if err != nil {
			return err
		}
		fmt.Printf("stress: %d busy processes on %d CPUs; %s\n", *stressProcs, runtime.NumCPU(), where)
		falseMoves, err = steady(nodes, probe, arps, *stressFor)
		if err == nil {
			stressed, err = failovers("stress run", *stressRuns)
		}
		stop()
		if err != nil {
			return err
		}
	}
	cancel()
	fmt.Printf("failover: runs=%d p50_ms=%.0f p99_ms=%.0f max_ms=%.0f dual_announce_ms=%d false_moves=%d stress_runs=%d stress_p99_ms=%.0f\n",
		len(outages), percentile(outages, 0.50), percentile(outages, 0.99), percentile(outages, 1), arps.longestDual().Milliseconds(),
		falseMoves, len(stressed), percentile(stressed, 0.99))
	return nil
}

// percentile returns the p-quantile (nearest rank) of xs, 0 when empty.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

func byName(nodes []*node, name string) *node {
	for _, n := range nodes {
		if n.host.Name == name {
			return n
		}
	}
	return nil
}

// partition adds or deletes blackhole routes between victim and every
// other node, cutting their heartbeats but not their Ethernet.
func partition(victim *node, nodes []*node, op string) error {
	for _, o := range nodes {
		if o == victim {
			continue
		}
		if _, err := victim.host.IP("route", op, "blackhole", o.host.IPv4.Addr().String()+"/32"); err != nil {
			return err
		}
		if _, err := o.host.IP("route", op, "blackhole", victim.host.IPv4.Addr().String()+"/32"); err != nil {
			return err
		}
	}
	return nil
}

// serveEcho answers each UDP datagram to the address with the node's name.
func serveEcho(h *netlab.Host) error {
	var conn *net.UDPConn
	err := h.Do(func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, echoPort)))
		return err
	})
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteToUDPAddrPort([]byte(h.Name), from)
		}
	}()
	return nil
}

type reply struct {
	at   time.Time
	node string
}

type prober struct {
	mu      sync.Mutex
	replies []reply
}

func startProber(ctx context.Context, h *netlab.Host) (*prober, error) {
	var conn *net.UDPConn
	err := h.Do(func() (err error) {
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, echoPort)))
		return err
	})
	if err != nil {
		return nil, err
	}
	p := &prober{}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // ICMP errors while the address has no owner
			}
			p.mu.Lock()
			p.replies = append(p.replies, reply{at: time.Now(), node: string(buf[:n])})
			p.mu.Unlock()
		}
	}()
	go func() {
		t := time.NewTicker(*interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_, _ = conn.Write([]byte("probe"))
			}
		}
	}()
	return p, nil
}

// waitServing waits for a reply and returns the answering node.
func (p *prober) waitServing(d time.Duration) (string, error) {
	since := time.Now()
	for time.Since(since) < d {
		p.mu.Lock()
		n := len(p.replies)
		var last reply
		if n > 0 {
			last = p.replies[n-1]
		}
		p.mu.Unlock()
		if n > 0 && last.at.After(since) {
			return last.node, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "", errors.New("no reply")
}

// gapAfter waits for the first reply after t from a node other than dead
// and returns the time between the last reply before t and it: the
// client-visible outage.
func (p *prober) gapAfter(t time.Time, dead string, d time.Duration) (time.Duration, string, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		var before, after *reply
		for i := range p.replies {
			r := &p.replies[i]
			if !r.at.After(t) {
				before = r
			} else if after == nil && r.node != dead {
				after = r
			}
		}
		p.mu.Unlock()
		if before != nil && after != nil {
			return after.at.Sub(before.at), after.node, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, "", errors.New("no reply after the failure")
}

// arpWatch asks who-has every probe interval and records the MACs that
// answer in each round.
type arpWatch struct {
	mu     sync.Mutex
	rounds []map[string]bool
}

func startARPWatch(ctx context.Context, h *netlab.Host) (*arpWatch, error) {
	var c *arp.Client
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Link)
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, err
	}
	w := &arpWatch{}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	go func() {
		for {
			pkt, _, err := c.Read()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			if pkt.Operation != arp.OperationReply || pkt.SenderIP != vip {
				continue
			}
			w.mu.Lock()
			if n := len(w.rounds); n > 0 {
				w.rounds[n-1][pkt.SenderHardwareAddr.String()] = true
			}
			w.mu.Unlock()
		}
	}()
	go func() {
		t := time.NewTicker(*interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.mu.Lock()
				w.rounds = append(w.rounds, map[string]bool{})
				w.mu.Unlock()
				_ = c.Request(vip)
			}
		}
	}()
	return w, nil
}

// longestDual is the longest run of rounds answered by two or more MACs,
// as a duration.
func (w *arpWatch) longestDual() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	longest, cur := 0, 0
	for _, r := range w.rounds {
		if len(r) > 1 {
			cur++
			longest = max(longest, cur)
		} else {
			cur = 0
		}
	}
	return time.Duration(longest) * *interval
}
