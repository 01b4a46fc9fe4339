// Command dataplane measures the kernel data plane against the direct path:
// a client namespace on a bridge, a node namespace running Portico's
// nftables table, and a pod namespace behind the node. In the same run it
// measures, alternating paths, iperf3 TCP throughput and new TCP
// connections per second, once to the pod's own address (routed by the
// node) and once to the load-balancer address (DNAT and masquerade by
// Portico's rules). Needs root, nft and iperf3.
//
// The last line is: dataplane: throughput_ratio=<x> conn_rate_ratio=<x>
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"

	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/e2e/netlab"
)

var vip = netip.MustParseAddr("203.0.113.10")

func main() {
	rounds := flag.Int("rounds", 10, "measurements per path, alternating direct and load-balanced (short runs, so load from elsewhere hits both alike)")
	iperfSecs := flag.Int("iperf-seconds", 2, "length of one iperf3 run")
	connDur := flag.Duration("conn-duration", time.Second, "length of one connection-rate run")
	workers := flag.Int("workers", 4, "concurrent connecting clients")
	flag.Parse()
	if err := run(*rounds, *iperfSecs, *connDur, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "bench-dataplane:", err)
		os.Exit(1)
	}
}

func run(rounds, iperfSecs int, connDur time.Duration, workers int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces and nftables)")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("needs iperf3 (apt-get install iperf3): %w", err)
	}
	lab, err := netlab.New()
	if err != nil {
		return err
	}
	defer lab.Close()
	nodeIP := netip.MustParseAddr("10.100.0.1")
	node, err := lab.AddHost("node", netip.PrefixFrom(nodeIP, 24), netip.Prefix{})
	if err != nil {
		return err
	}
	if err := dptest.EnableForwarding(node); err != nil {
		return err
	}
	client, err := lab.AddHost("client", netip.MustParsePrefix("10.100.0.10/24"), netip.Prefix{})
	if err != nil {
		return err
	}
	for _, dst := range []string{"203.0.113.0/24", "10.200.0.0/16"} {
		if _, err := client.IP("route", "add", dst, "via", nodeIP.String()); err != nil {
			return err
		}
	}
	pod, err := dptest.AddPod(lab.ID(), node, 1)
	if err != nil {
		return err
	}
	defer pod.Remove()

	// The connection server: accept, one line, close.
	srv, err := dptest.Serve(pod.Host, "pod1", 8080)
	if err != nil {
		return err
	}
	defer srv.Close()
	iperf := pod.Command("iperf3", "-s", "-p", "5201")
	iperf.Stdout, iperf.Stderr = io.Discard, io.Discard
	if err := iperf.Start(); err != nil {
		return fmt.Errorf("starting iperf3 server: %w", err)
	}
	defer func() { _ = iperf.Process.Kill(); _ = iperf.Wait() }()

	ctx := context.Background()
	var dp *dataplane.Dataplane
	err = node.Do(func() error {
		if dp, err = dataplane.New(dataplane.Options{NodeName: "node-a"}); err != nil {
			return err
		}
		ep := []dataplane.Endpoint{{Addr: pod.Addr, NodeName: "node-a", Ready: true}}
		eps := func(port uint16) []dataplane.Endpoint { e := slices.Clone(ep); e[0].Port = port; return e }
		return dp.Sync(ctx, []dataplane.Service{{
			Key:             dataplane.ServiceKey{Namespace: "bench", Name: "pod"},
			LoadBalancerIPs: []netip.Addr{vip},
			TrafficPolicy:   dataplane.Cluster,
			Ports: []dataplane.Port{
				{Name: "iperf", Protocol: dataplane.TCP, Port: 5201, Endpoints: eps(5201)},
				{Name: "http", Protocol: dataplane.TCP, Port: 80, Endpoints: eps(8080)},
			},
		}})
	})
	if err != nil {
		return err
	}
	defer func() { _ = node.Do(func() error { return dp.Cleanup(ctx) }) }()
	time.Sleep(300 * time.Millisecond) // iperf3 server up

	var tDirect, tLB, cDirect, cLB []float64
	for r := range rounds {
		// Which path goes first alternates too.
		first, second := pod.Addr, vip
		if r%2 == 1 {
			first, second = vip, pod.Addr
		}
		a, err := throughput(client, first, iperfSecs)
		if err != nil {
			return fmt.Errorf("iperf3 to %s: %w", first, err)
		}
		b, err := throughput(client, second, iperfSecs)
		if err != nil {
			return fmt.Errorf("iperf3 to %s: %w", second, err)
		}
		d, l := a, b
		if r%2 == 1 {
			d, l = b, a
		}
		tDirect, tLB = append(tDirect, d), append(tLB, l)
		fmt.Printf("round %d throughput: direct %.2f Gbit/s, load-balanced %.2f Gbit/s\n", r+1, d/1e9, l/1e9)

		direct, lb := netip.AddrPortFrom(pod.Addr, 8080), netip.AddrPortFrom(vip, 80)
		if r%2 == 1 {
			direct, lb = lb, direct
		}
		ca, err := connRate(client, direct, connDur, workers)
		if err != nil {
			return fmt.Errorf("connections to %s: %w", direct, err)
		}
		cb, err := connRate(client, lb, connDur, workers)
		if err != nil {
			return fmt.Errorf("connections to %s: %w", lb, err)
		}
		cd, cl := ca, cb
		if r%2 == 1 {
			cd, cl = cb, ca
		}
		cDirect, cLB = append(cDirect, cd), append(cLB, cl)
		fmt.Printf("round %d new connections/s: direct %.0f, load-balanced %.0f\n", r+1, cd, cl)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("load average during the run: %s", load)
	// Ratios of the sums over all rounds: each round pairs the paths back
	// to back, so a busy moment weighs on both.
	tr, cr := sum(tLB)/sum(tDirect), sum(cLB)/sum(cDirect)
	fmt.Printf("totals: throughput direct %.2f Gbit/s, load-balanced %.2f Gbit/s; connections/s direct %.0f, load-balanced %.0f (median of per-round ratios %.2f, %.2f)\n",
		sum(tDirect)/float64(rounds)/1e9, sum(tLB)/float64(rounds)/1e9, sum(cDirect)/float64(rounds), sum(cLB)/float64(rounds),
		median(ratios(tLB, tDirect)), median(ratios(cLB, cDirect)))
	fmt.Printf("dataplane: throughput_ratio=%.2f conn_rate_ratio=%.2f\n", tr, cr)
	return nil
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// throughput runs one iperf3 TCP test from client to addr:5201 and returns
// the received bits per second.
func throughput(client *netlab.Host, addr netip.Addr, secs int) (float64, error) {
	out, err := client.Command("iperf3", "-c", addr.String(), "-p", "5201", "-t", fmt.Sprint(secs), "-J").Output()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, err
	}
	if res.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// connRate opens TCP connections to addr from workers goroutines whose
// threads sit in the client's namespace, for dur, each reading the
// server's line; it returns completed connections per second.
func connRate(client *netlab.Host, addr netip.AddrPort, dur time.Duration, workers int) (float64, error) {
	target, err := netns.GetFromName(client.NS)
	if err != nil {
		return 0, err
	}
	defer target.Close()
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The thread stays locked: when the goroutine ends, the runtime
			// discards it instead of reusing a thread in the client's namespace.
			runtime.LockOSThread()
			if err := netns.Set(target); err != nil {
				once.Do(func() { firstErr = err })
				return
			}
			buf := make([]byte, 128)
			for time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				// Reset instead of TIME_WAIT, so ports do not run out.
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(done.Load()) / dur.Seconds(), nil
}
