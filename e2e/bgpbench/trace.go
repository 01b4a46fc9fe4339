package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The breakdown of an announcement's latency, per address, along the last
// node's path (the route is complete with that node's next hop):
//
//	status    the bench's watch sees the address in the Service's status
//	queued    that node's BGP watcher gets the change from its informers
//	          (the first unsynced change of the Service: bgp.Watcher's
//	          "Routes handed to GoBGP" trace at V(4))
//	planned   the watcher's sync has planned it (waiting for the sync loop
//	          and the cache reads: "forwarder")
//	patched   GoBGP has taken it ("gobgp": AddPath, through each GoBGP
//	          server's own loop)
//	received  bgpd logs the prefix from the node (--trace: FRR's "debug bgp
//	          updates in")
//	to zebra  bgpd sends the route, with that next hop, to zebra (--trace:
//	          "debug bgp zebra"; FRR's route processing queue holds 50 ms)
//	fib       the route has all its next hops in the router's kernel table
//	          (netlink)

// handoff is one prefix in a forwarder's trace.
type handoff struct{ queued, planned, patched time.Time }

// forwarderTrace reads a forwarder's log: prefix -> its hand-offs to GoBGP.
func forwarderTrace(path string) (map[netip.Prefix][]handoff, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseForwarderTrace(f)
}

func parseForwarderTrace(r io.Reader) (map[netip.Prefix][]handoff, error) {
	out := map[netip.Prefix][]handoff{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), "Routes handed to GoBGP") {
			continue
		}
		var e struct {
			Msg     string   `json:"msg"`
			Planned int64    `json:"plannedUnixMicro"`
			Patched int64    `json:"patchedUnixMicro"`
			Routes  []string `json:"routes"`
		}
		if json.Unmarshal(line, &e) != nil || e.Msg != "Routes handed to GoBGP" {
			continue
		}
		for _, r := range e.Routes {
			ps, qs, ok := strings.Cut(r, "@")
			p, err1 := netip.ParsePrefix(ps)
			q, err2 := strconv.ParseInt(qs, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			h := handoff{queued: time.UnixMicro(q), planned: time.UnixMicro(e.Planned), patched: time.UnixMicro(e.Patched)}
			if e.Planned == 0 { // a forwarder before the planned time was traced
				h.planned = h.patched
			}
			out[p] = append(out[p], h)
		}
	}
	return out, sc.Err()
}

// routerTrace is what FRR's bgpd logged with Config.Trace: when each
// prefix arrived from each neighbor and when each route went to zebra.
type routerTrace struct {
	received map[netip.Prefix]map[netip.Addr][]time.Time
	toZebra  map[netip.Prefix][]time.Time
}

var (
	// 2026/11/30 07:20:28.464365 BGP: [YCKEM-GB33T] 10.88.0.1(vm) rcvd 10.64.0.0/32 IPv4 unicast
	rcvdLine = regexp.MustCompile(`^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) BGP: \[[^]]*\] ([^ (]+)(?:\([^)]*\))? rcvd ([^ ]+/\d+)`)
	// 2026/11/30 07:20:36.271254 BGP: [V15FP-4CPVK] Tx route add VRF 0 10.64.0.0/32 metric 0 tag 0 count 3 nhg 0
	zebraLine = regexp.MustCompile(`^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) BGP: \[[^]]*\] Tx route add VRF \d+ (\S+)`)
)

func parseRouterTrace(r io.Reader) (routerTrace, error) {
	t := routerTrace{received: map[netip.Prefix]map[netip.Addr][]time.Time{}, toZebra: map[netip.Prefix][]time.Time{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	at := func(s string) (time.Time, bool) {
		ts, err := time.ParseInLocation("2006/01/02 15:04:05.999999", s, time.Local)
		return ts, err == nil
	}
	for sc.Scan() {
		line := sc.Text()
		if m := rcvdLine.FindStringSubmatch(line); m != nil {
			ts, ok := at(m[1])
			peer, err1 := netip.ParseAddr(m[2])
			p, err2 := netip.ParsePrefix(m[3])
			if ok && err1 == nil && err2 == nil {
				if t.received[p] == nil {
					t.received[p] = map[netip.Addr][]time.Time{}
				}
				t.received[p][peer] = append(t.received[p][peer], ts)
			}
		} else if m := zebraLine.FindStringSubmatch(line); m != nil {
			ts, ok := at(m[1])
			if p, err := netip.ParsePrefix(m[2]); ok && err == nil {
				t.toZebra[p] = append(t.toZebra[p], ts)
			}
		}
	}
	return t, sc.Err()
}

// firstAfter is the first time in ts not before t.
func firstAfter(ts []time.Time, t time.Time) (time.Time, bool) {
	for _, x := range ts {
		if !x.Before(t) {
			return x, true
		}
	}
	return time.Time{}, false
}

// stageNames in order; the router's part is split only with --trace.
var stageNames = []string{"informer", "forwarder", "gobgp", "to_bgpd", "bgpd", "zebra_kernel", "router"}

// breakdown splits each address's latency (status -> fib) into stages along
// the path of the node whose next hop completed the route, prints p50 and
// p99 of each stage and the mean of each over the slowest 1% of addresses,
// and writes the per-address stages to breakdown-<set>.txt.
func (b *bench) breakdown(set string, status, fib map[netip.Addr]time.Time, hops map[netip.Addr][]netip.Addr) error {
	fwd := map[netip.Addr]map[netip.Prefix][]handoff{} // node address -> its trace
	for _, n := range b.c.Nodes {
		t, err := forwarderTrace(n.Log)
		if err != nil {
			return err
		}
		fwd[n.Host.IPv4.Addr()] = t
		if a6, ok := b.nodeAddr6[n.Name]; ok {
			fwd[a6] = t
		}
	}
	var rt *routerTrace
	if *trace {
		f, err := os.Open(b.bgpdLog)
		if err != nil {
			return err
		}
		t, err := parseRouterTrace(f)
		f.Close()
		if err != nil {
			return err
		}
		rt = &t
	}
	stages := map[string][]time.Duration{}
	type row struct {
		a     netip.Addr
		total time.Duration
		st    map[string]time.Duration
	}
	var rows []row
	missing := 0
	for a, s := range status {
		f, ok := fib[a]
		if !ok {
			continue
		}
		p := netip.PrefixFrom(a, a.BitLen())
		// The last node: the one whose hand-off (or, with --trace, whose
		// UPDATE at the router) came last.
		var last netip.Addr
		var lastH handoff
		var lastR time.Time
		complete := true
		for _, n := range hops[a] {
			hs := fwd[n][p]
			i := slices.IndexFunc(hs, func(h handoff) bool { return !h.patched.Before(s.Add(-time.Second)) })
			if i < 0 {
				complete = false
				break
			}
			h := hs[i]
			key := h.patched
			if rt != nil {
				r, ok := firstAfter(rt.received[p][n], h.patched.Add(-time.Millisecond))
				if !ok {
					complete = false
					break
				}
				key = r
			}
			if !last.IsValid() || key.After(lastR) {
				last, lastH, lastR = n, h, key
			}
		}
		if !complete || !last.IsValid() {
			missing++
			continue
		}
		st := map[string]time.Duration{
			"informer":  lastH.queued.Sub(s),
			"forwarder": lastH.planned.Sub(lastH.queued),
			"gobgp":     lastH.patched.Sub(lastH.planned),
		}
		if rt != nil {
			z, ok := firstAfter(rt.toZebra[p], lastR)
			if !ok || z.After(f) {
				missing++
				continue
			}
			st["to_bgpd"] = lastR.Sub(lastH.patched)
			st["bgpd"] = z.Sub(lastR)
			st["zebra_kernel"] = f.Sub(z)
		} else {
			st["router"] = f.Sub(lastH.patched)
		}
		for k, d := range st {
			stages[k] = append(stages[k], d)
		}
		rows = append(rows, row{a: a, total: f.Sub(s), st: st})
	}
	if len(rows) == 0 {
		fmt.Printf("breakdown %s: no address could be followed (%d without a complete trace)\n", set, missing)
		return nil
	}
	slices.SortFunc(rows, func(x, y row) int { return int(y.total - x.total) })
	slow := rows[:max(1, len(rows)/100)]
	var line strings.Builder
	fmt.Fprintf(&line, "breakdown %s (%d addresses, %d without a complete trace):", set, len(rows), missing)
	var file strings.Builder
	fmt.Fprintf(&file, "# address total_us")
	for _, k := range stageNames {
		ds, ok := stages[k]
		if !ok {
			continue
		}
		var sum time.Duration
		for _, r := range slow {
			sum += r.st[k]
		}
		fmt.Fprintf(&line, " %s p50_ms=%.1f p99_ms=%.1f slowest1%%_mean_ms=%.1f;", k, ms(pctD(ds, .5)), ms(pctD(ds, .99)), ms(sum/time.Duration(len(slow))))
		fmt.Fprintf(&file, " %s_us", k)
	}
	fmt.Println(strings.TrimSuffix(line.String(), ";"))
	file.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(&file, "%s %d", r.a, r.total.Microseconds())
		for _, k := range stageNames {
			if d, ok := r.st[k]; ok {
				fmt.Fprintf(&file, " %d", d.Microseconds())
			}
		}
		file.WriteString("\n")
	}
	return os.WriteFile(b.logPath("breakdown-"+set+".txt"), []byte(file.String()), 0o644)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pctD(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
