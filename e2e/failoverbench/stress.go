package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startBusy starts n busy-loop processes, pinned round-robin to the CPUs
// with taskset where it exists, and returns a function that kills them.
// Each loop ends by itself after limit, and dies with this process (the
// thread that started it is kept until stop).
func startBusy(n int, limit time.Duration, place func(pid int) error) (stop func(), err error) {
	started := make(chan error, 1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		// Pdeathsig follows the thread that started the child: keep it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var cmds []*exec.Cmd
		defer func() {
			for _, c := range cmds {
				_ = c.Process.Kill()
				_ = c.Wait()
			}
		}()
		taskset, _ := exec.LookPath("taskset")
		script := fmt.Sprintf("while ((SECONDS < %d)); do :; done", int(limit.Seconds())+1)
		for i := range n {
			loop := []string{"bash", "-c", script}
			if taskset != "" {
				loop = append([]string{taskset, "-c", strconv.Itoa(i % runtime.NumCPU())}, loop...)
			}
			c := exec.Command(loop[0], loop[1:]...)
			c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := c.Start(); err != nil {
				started <- fmt.Errorf("starting a busy loop: %w", err)
				return
			}
			cmds = append(cmds, c)
			if err := place(c.Process.Pid); err != nil {
				started <- err
				return
			}
		}
		started <- nil
		<-done
	}()
	if err := <-started; err != nil {
		<-finished
		return nil, err
	}
	return func() { close(done); <-finished }, nil
}

// steady watches the address for d while no node fails and returns the
// number of false moves: the largest of the takeovers and the releases the
// forwarders count on /metrics, and the changes of the node answering the
// client.
func steady(nodes []*node, probe *prober, arps *arpWatch, d time.Duration) (int, error) {
	owner, err := probe.waitServing(3 * time.Second)
	if err != nil {
		return 0, fmt.Errorf("stress: %w", err)
	}
	before, err := moves(nodes)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	arps.mu.Lock()
	firstRound := len(arps.rounds)
	arps.mu.Unlock()
	time.Sleep(d)
	end := time.Now()
	after, err := moves(nodes)
	if err != nil {
		return 0, err
	}
	takeovers, releases := after[0]-before[0], after[1]-before[1]

	// The client's view: each change of the answering node, and the
	// longest silence.
	probe.mu.Lock()
	changes, last, longest, prev := 0, owner, time.Duration(0), start
	for _, r := range probe.replies {
		if r.at.Before(start) || r.at.After(end) {
			continue
		}
		if r.node != last {
			changes++
			last = r.node
		}
		longest = max(longest, r.at.Sub(prev))
		prev = r.at
	}
	probe.mu.Unlock()
	longest = max(longest, end.Sub(prev))

	// Rounds of ARP who-has answered by another node's MAC.
	ownerMAC := byName(nodes, owner).host.MAC.String()
	foreign := 0
	arps.mu.Lock()
	for _, r := range arps.rounds[firstRound:] {
		for mac := range r {
			if mac != ownerMAC {
				foreign++
				break
			}
		}
	}
	arps.mu.Unlock()

	fmt.Printf("stress: %s without a failure, %s announcing: takeovers=%d releases=%d client_moves=%d foreign_arp_rounds=%d longest_gap_ms=%d\n",
		d, owner, takeovers, releases, changes, foreign, longest.Milliseconds())
	return max(takeovers, releases, changes), nil
}

// moves sums portico_forwarder_takeovers_total and
// portico_forwarder_releases_total over the nodes.
func moves(nodes []*node) ([2]int, error) {
	var sum [2]int
	for _, n := range nodes {
		m, err := scrape(n)
		if err != nil {
			return sum, fmt.Errorf("scraping %s: %w", n.host.Name, err)
		}
		for i, name := range []string{"portico_forwarder_takeovers_total", "portico_forwarder_releases_total"} {
			v, ok := m[name]
			if !ok {
				return sum, fmt.Errorf("%s exposes no %s", n.host.Name, name)
			}
			sum[i] += int(v)
		}
	}
	return sum, nil
}

// scrape reads the forwarder's /metrics (the default :7474) from inside its
// node's namespace: series as exposed -> value.
func scrape(n *node) (map[string]float64, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = n.host.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://127.0.0.1:7474/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// waitRejoined waits until every node's forwarder counts all nodes alive
// and has its quorum.
func waitRejoined(nodes []*node, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var missing []string
		for _, n := range nodes {
			m, err := scrape(n)
			if err != nil || m["portico_forwarder_peers_alive"] != float64(len(nodes)) || m["portico_forwarder_quorum"] != 1 {
				missing = append(missing, n.host.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, %v still do not hear every node", d, missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
