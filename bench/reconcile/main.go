// Command reconcile benchmarks the Service controller on the real control
// plane with the memory backend (make bench-reconcile).
//
// It runs the real portico-operator binary against a kube-apiserver, etcd
// and kube-controller-manager built from source, with kwok playing the
// kubelets of the nodes, then:
//   - paced phase: creates Services at --rate per second and measures, for
//     each, the time from its Create call returning to its address appearing
//     in status.loadBalancer.ingress (seen through a watch);
//   - burst phase: creates --services Services at once and measures how many
//     per second get an address.
//
// Right before the burst, the same number of Services of a class no one
// serves are created the same way (64 in flight) on the same apiserver,
// then deleted: the bare apiserver's creation rate at the population the
// burst starts from, which bounds the burst (--bare-rounds times; the best
// counts). burst_ratio is the burst rate over that rate. (kube-apiserver's
// ClusterIP allocator costs more per create the more Services exist, so the
// two are measured from the same population; see bareRate.)
//
// Between phases the run waits until the control plane's writes settle
// (kube-controller-manager writes the bare Services' EndpointSlices at its
// own client rate for tens of seconds). For each phase it prints the
// apiserver's write requests per Service by resource ("writes:", from its
// apiserver_request_total), the CPU seconds of every process it started
// ("cpu_s:"), and for the paced phase where the time goes: Create returned
// to finalizer seen, finalizer seen to address seen.
//
// The last line is:
//
//	reconcile: services=<burst n> p50_ms=<paced p50> p99_ms=<paced p99> per_s=<burst rate> operator_rss_mb=<peak RSS> burst_ratio=<per_s / bare per_s>
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/testenv"
)

func main() {
	services := flag.Int("services", 1000, "Services created in the burst phase.")
	paced := flag.Int("paced", 500, "Services created in the paced phase.")
	rate := flag.Int("rate", 50, "Creates per second in the paced phase (issue 18 compares with MetalLB at 50/s).")
	nodes := flag.Int("nodes", 10, "Ready Node objects behind every load balancer.")
	workers := flag.Int("workers", 32, "Operator --workers.")
	operatorBin := flag.String("operator", "bin/portico-operator", "Path of the portico-operator binary.")
	flag.StringVar(&cpuProfile, "cpu-profile", "", "Write a CPU profile of the operator during the burst to this file (the operator serves pprof on a free local port).")
	flag.StringVar(&apiCPUProfile, "apiserver-cpu-profile", "", "Write a CPU profile of kube-apiserver during the burst (its first 10 s) to this file, one of the bare phase to this file + \".bare\" and one of the paced phase to this file + \".paced\".")
	flag.IntVar(&bareRounds, "bare-rounds", 2, "How many times the bare rate is measured from the burst's population; burst_ratio is held to the best.")
	flag.BoolVar(&bareAtStart, "bare-at-start", true, "Also measure the bare apiserver's creation rate on the empty cluster, before the operator starts (bare: at=start, and the burst's ratio to it: burst: ratio_to_bare_at_start), beside the rate at the burst's population that burst_ratio uses.")
	flag.Parse()
	if bareRounds < 1 {
		fmt.Fprintln(os.Stderr, "bench-reconcile: --bare-rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(*services, *paced, *rate, *nodes, *workers, *operatorBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench-reconcile:", err)
		os.Exit(1)
	}
}

// cpuProfile, when set, is where the operator's CPU profile of the burst
// goes; apiCPUProfile, kube-apiserver's.
var cpuProfile, apiCPUProfile string

// bareAtStart adds a bare phase on the empty cluster; bareRounds is how
// many times the bare rate is measured from the burst's population.
var (
	bareAtStart bool
	bareRounds  int
)

func run(services, paced, rate, nodes, workers int, operatorBin string) (err error) {
	// The bare Services, the paced and the burst phase each take a node port.
	env, err := testenv.NewWith(testenv.Options{Controllers: true, Kwok: true, NodePortRange: "20000-32767"})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	defer func() {
		// kube-controller-manager or kwok panicking or dying fails the run.
		if serr := env.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// The bench's own creates and watches speak protobuf, as
	// kube-controller-manager, the kubelets and the operator's built-in
	// kinds do: in JSON, the apiserver would encode every Service event a
	// second time for the bench's watch alone.
	benchCfg := rest.CopyConfig(env.Config)
	benchCfg.ContentType = runtime.ContentTypeProtobuf
	benchCfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(benchCfg)
	if err != nil {
		return err
	}
	for i := range nodes {
		n := gen.Node(fmt.Sprintf("bench-node-%d", i), fmt.Sprintf("10.200.0.%d", i+1))
		// kwok keeps the node's status and Lease fresh.
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[testenv.KwokNodeAnnotation] = testenv.KwokNodeValue
		if err := testenv.CreateNodeWithStatus(ctx, env.Client, n); err != nil {
			return err
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	bareStart := 0.0
	if bareAtStart {
		if bareStart, err = bareRate(ctx, env.Config, cs, services, "start", ""); err != nil {
			return fmt.Errorf("bare apiserver at start: %w", err)
		}
	}

	args := []string{"--kubeconfig", env.Kubeconfig, "--providers", "memory", "--memory-ipv4-range", "10.128.0.0/16",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--workers", strconv.Itoa(workers), "--kube-api-qps", "5000", "--kube-api-burst", "10000",
		"--zap-log-level", "error"}
	pprofAddr := ""
	if cpuProfile != "" {
		port, err := freePort()
		if err != nil {
			return err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	op, err := testenv.StartProcess("portico-operator", exec.Command(operatorBin, args...), testenv.ProcessOptions{CleanExit: true})
	if err != nil {
		return err
	}
	// A panic or an unexpected exit of the operator fails the benchmark.
	defer func() {
		if perr := op.Stop(); perr != nil {
			err = errors.Join(err, fmt.Errorf("%w\n%s", perr, op.Tail(30)))
		}
	}()

	w := newWatcher(ctx, cs)
	// Warm up: one Service proves the operator is running and its caches synced.
	if _, err := w.createAndWait(ctx, "warmup"); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	// The warm-up's record pass must not run into the paced phase.
	if err := settle(ctx, cs); err != nil {
		return err
	}

	// Paced phase.
	before, err := apiWrites(ctx, cs)
	if err != nil {
		return err
	}
	pacedProfiled := make(chan error, 1)
	if apiCPUProfile != "" {
		go func() { pacedProfiled <- saveAPIServerProfile(ctx, env.Config, apiCPUProfile+".paced") }()
	}
	cpuBefore := cpuSeconds()
	var lat []timing
	var mu sync.Mutex
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := range paced {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := w.createAndWait(ctx, fmt.Sprintf("paced-%d", i))
			if err != nil {
				fmt.Fprintln(os.Stderr, "paced:", err)
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	tick.Stop()
	wg.Wait()
	if apiCPUProfile != "" {
		if err := <-pacedProfiled; err != nil {
			return fmt.Errorf("apiserver cpu profile: %w", err)
		}
	}
	if len(lat) != paced {
		return fmt.Errorf("paced phase: %d of %d Services got an address", len(lat), paced)
	}
	p50, p99 := percentiles(lat, func(t timing) time.Duration { return t.address })
	f50, f99 := percentiles(lat, func(t timing) time.Duration { return t.finalizer })
	s50, s99 := percentiles(lat, func(t timing) time.Duration { return t.address - t.finalizer })
	fmt.Printf("paced: services=%d rate=%d/s p50_ms=%d p99_ms=%d max_ms=%d\n", paced, rate, p50.Milliseconds(), p99.Milliseconds(),
		slices.MaxFunc(lat, func(a, b timing) int { return cmp.Compare(a.address, b.address) }).address.Milliseconds())
	// Where the time goes: Create returned -> finalizer seen (watch to the
	// operator, its queue, the finalizer and record writes, watch back) and
	// finalizer seen -> address seen (the backend, the status write, watch
	// back).
	fmt.Printf("cpu_s: phase=paced %s\n", cpuSince(cpuSeconds(), cpuBefore))
	fmt.Printf("paced: to_finalizer_p50_ms=%d to_finalizer_p99_ms=%d finalizer_to_address_p50_ms=%d finalizer_to_address_p99_ms=%d\n",
		f50.Milliseconds(), f99.Milliseconds(), s50.Milliseconds(), s99.Milliseconds())
	if err := settle(ctx, cs); err != nil {
		return err
	}
	after, err := apiWrites(ctx, cs)
	if err != nil {
		return err
	}
	fmt.Printf("writes: phase=paced %s\n", after.since(before, paced))

	bareProfile := ""
	if apiCPUProfile != "" {
		bareProfile = apiCPUProfile + ".bare"
	}
	// The bare rate of a few seconds' creates swings with the apiserver's
	// garbage collections and what else runs; the best of --bare-rounds
	// rounds is the one the burst is held to (the harder comparison).
	bare := 0.0
	for round := range bareRounds {
		r, err := bareRate(ctx, env.Config, cs, services, fmt.Sprintf("burst_population round=%d", round+1), bareProfile)
		if err != nil {
			return fmt.Errorf("bare apiserver: %w", err)
		}
		bare, bareProfile = max(bare, r), ""
	}
	fmt.Printf("bare: at=burst_population best_per_s=%.0f\n", bare)

	// Burst phase.
	profiled := make(chan error, 1)
	if pprofAddr != "" {
		go func() { profiled <- testenv.SaveProfile(ctx, pprofAddr, "profile?seconds=10", cpuProfile) }()
	}
	apiProfiled := make(chan error, 1)
	if apiCPUProfile != "" {
		go func() { apiProfiled <- saveAPIServerProfile(ctx, env.Config, apiCPUProfile) }()
	}
	if before, err = apiWrites(ctx, cs); err != nil {
		return err
	}
	cpuBefore = cpuSeconds()
	start := time.Now()
	if err := inFlight(services, func(i int) error {
		_, err := w.createAndWait(ctx, fmt.Sprintf("burst-%d", i))
		return err
	}); err != nil {
		return fmt.Errorf("burst phase: %w", err)
	}
	elapsed := time.Since(start)
	perS := float64(services) / elapsed.Seconds()
	fmt.Printf("burst: services=%d elapsed_ms=%d\n", services, elapsed.Milliseconds())
	fmt.Printf("cpu_s: phase=burst %s\n", cpuSince(cpuSeconds(), cpuBefore))
	// The writes while the burst got its addresses, and all it cost once
	// everything (records, Events, EndpointSlices) settled.
	during, err := apiWrites(ctx, cs)
	if err != nil {
		return err
	}
	fmt.Printf("writes: phase=burst_until_addressed %s\n", during.since(before, services))
	if err := settle(ctx, cs); err != nil {
		return err
	}
	if after, err = apiWrites(ctx, cs); err != nil {
		return err
	}
	fmt.Printf("writes: phase=burst %s\n", after.since(before, services))
	if pprofAddr != "" {
		if err := <-profiled; err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	if apiCPUProfile != "" {
		if err := <-apiProfiled; err != nil {
			return fmt.Errorf("apiserver cpu profile: %w", err)
		}
	}

	if bareStart > 0 {
		fmt.Printf("burst: ratio_to_bare_at_start=%.2f\n", perS/bareStart)
	}
	rss, err := peakRSSMB(op.Pid())
	if err != nil {
		return err
	}
	fmt.Printf("reconcile: services=%d p50_ms=%d p99_ms=%d per_s=%.0f operator_rss_mb=%d burst_ratio=%.2f\n", services, p50.Milliseconds(), p99.Milliseconds(), perS, rss, perS/bare)
	return nil
}

// bareRate measures the bare apiserver's creation rate (bareCreateRate) at
// the population the burst starts from, then deletes those Services and
// waits until the control plane settles. kube-apiserver's ClusterIP
// allocator walks every allocated address on each allocation (its Used(),
// for metrics), so a create costs more the more Services exist: measured on
// an emptier cluster, the bare rate came out higher than the same creates
// reach at the burst's population (at 2,000 Services the walk was a quarter
// of the apiserver's CPU in the burst).
//
// at names the measurement in the output; a non-empty profile receives
// kube-apiserver's CPU profile of the creates (at most 10 s).
func bareRate(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, n int, at, profile string) (float64, error) {
	before, err := apiWrites(ctx, cs)
	if err != nil {
		return 0, err
	}
	profiled := make(chan error, 1)
	if profile != "" {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { profiled <- saveAPIServerProfile(pctx, cfg, profile) }()
	}
	cpuBefore := cpuSeconds()
	bare, err := bareCreateRate(ctx, cs, n)
	if err != nil {
		return 0, err
	}
	fmt.Printf("bare: at=%s services=%d per_s=%.0f\n", at, n, bare)
	if profile != "" {
		if err := <-profiled; err != nil {
			return 0, fmt.Errorf("apiserver cpu profile: %w", err)
		}
	}
	fmt.Printf("cpu_s: phase=bare at=%s %s\n", at, cpuSince(cpuSeconds(), cpuBefore))
	// kube-controller-manager writes an EndpointSlice for each bare Service
	// at its own client rate, long after the bare Creates returned; that
	// backlog must not run into the burst.
	settleStart := time.Now()
	if err := settle(ctx, cs); err != nil {
		return 0, err
	}
	after, err := apiWrites(ctx, cs)
	if err != nil {
		return 0, err
	}
	fmt.Printf("writes: phase=bare at=%s settled_ms=%d %s\n", at, time.Since(settleStart).Milliseconds(), after.since(before, n))
	if err := inFlight(n, func(i int) error {
		return cs.CoreV1().Services("bare").Delete(ctx, fmt.Sprintf("bare-%d", i), metav1.DeleteOptions{})
	}); err != nil {
		return 0, fmt.Errorf("deleting the bare Services: %w", err)
	}
	// The garbage collector deletes their EndpointSlices.
	if err := settle(ctx, cs); err != nil {
		return 0, err
	}
	return bare, nil
}

// bareCreateRate creates n LoadBalancer Services of a class no controller
// serves, 64 in flight as in the burst phase, in their own namespace, and
// returns the creations per second: what the apiserver alone manages (node
// port and ClusterIP allocation included).
func bareCreateRate(ctx context.Context, cs kubernetes.Interface, n int) (float64, error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bare"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, err
	}
	start := time.Now()
	if err := inFlight(n, func(i int) error {
		svc := gen.Service("bare", fmt.Sprintf("bare-%d", i), gen.WithClass("example.com/nobody"), gen.ForAPI())
		_, err := cs.CoreV1().Services("bare").Create(ctx, svc, metav1.CreateOptions{})
		return err
	}); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// inFlight runs do(0..n-1) with 64 calls in flight, as the burst creates,
// and returns the first error.
func inFlight(n int, do func(i int) error) error {
	sem := make(chan struct{}, 64)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := do(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// watcher reports when each Service first has an ingress address, and
// when it was first seen with Portico's finalizer (the first of the two
// round trips on the way to the address).
type watcher struct {
	cs        kubernetes.Interface
	mu        sync.Mutex
	waiters   map[string]chan struct{}
	ready     map[string]bool
	finalized map[string]time.Time
}

func newWatcher(ctx context.Context, cs kubernetes.Interface) *watcher {
	w := &watcher{cs: cs, waiters: map[string]chan struct{}{}, ready: map[string]bool{}, finalized: map[string]time.Time{}}
	go w.loop(ctx)
	return w
}

func (w *watcher) loop(ctx context.Context) {
	for ctx.Err() == nil {
		wi, err := w.cs.CoreV1().Services("bench").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range wi.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			now := time.Now()
			w.mu.Lock()
			if _, seen := w.finalized[svc.Name]; !seen && slices.Contains(svc.Finalizers, controllers.Finalizer) {
				w.finalized[svc.Name] = now
			}
			if len(svc.Status.LoadBalancer.Ingress) == 0 {
				w.mu.Unlock()
				continue
			}
			if !w.ready[svc.Name] {
				w.ready[svc.Name] = true
				if ch, ok := w.waiters[svc.Name]; ok {
					close(ch)
				}
			}
			w.mu.Unlock()
		}
	}
}

// timing is one Service's way to its address, from its Create returning.
type timing struct {
	// finalizer is when the Service was first seen with Portico's
	// finalizer (the operator's first round trip done), address when its
	// address was seen.
	finalizer, address time.Duration
}

// createAndWait creates a Service and returns the time from its Create
// returning to its finalizer and its address being seen.
func (w *watcher) createAndWait(ctx context.Context, name string) (timing, error) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiters[name] = ch
	w.mu.Unlock()
	svc := gen.Service("bench", name, gen.WithClass("lb.portico.dev/memory"), gen.ForAPI())
	if _, err := w.cs.CoreV1().Services("bench").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return timing{}, err
	}
	start := time.Now()
	select {
	case <-ch:
		t := timing{address: time.Since(start)}
		w.mu.Lock()
		if f, ok := w.finalized[name]; ok {
			t.finalizer = max(0, f.Sub(start))
		}
		w.mu.Unlock()
		return t, nil
	case <-time.After(2 * time.Minute):
		return timing{}, fmt.Errorf("service %s got no address within 2m", name)
	}
}

func peakRSSMB(pid int) (int, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func percentiles(ts []timing, of func(timing) time.Duration) (p50, p99 time.Duration) {
	d := make([]time.Duration, len(ts))
	for i, t := range ts {
		d[i] = of(t)
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// writeCounts are the apiserver's write requests (POST, PUT, PATCH,
// DELETE) so far, by resource and subresource ("services/status"), from
// its apiserver_request_total counter.
type writeCounts map[string]float64

// background are the writes the nodes make on their own (kwok's Leases and
// Node status), which no phase causes.
var background = []string{"leases", "nodes", "nodes/status"}

// apiWrites reads the apiserver's write counts from its /metrics.
func apiWrites(ctx context.Context, cs kubernetes.Interface) (writeCounts, error) {
	body, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	out := writeCounts{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				l[k] = strings.Trim(v, `"`)
			}
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE":
		default:
			continue
		}
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		res := l["resource"]
		if l["subresource"] != "" {
			res += "/" + l["subresource"]
		}
		out[res] += n
	}
	return out, nil
}

// since prints the writes made since before, per Service, by resource, the
// nodes' own writes left out.
func (w writeCounts) since(before writeCounts, services int) string {
	total := 0.0
	var parts []string
	for _, res := range slices.Sorted(maps.Keys(w)) {
		d := w[res] - before[res]
		if d == 0 || slices.Contains(background, res) {
			continue
		}
		total += d
		parts = append(parts, fmt.Sprintf("%s=%.2f", res, d/float64(services)))
	}
	return fmt.Sprintf("per_service=%.2f %s", total/float64(services), strings.Join(parts, " "))
}

// settle waits until the writes other than the nodes' own stop for a
// second: the work a phase left behind (kube-controller-manager's
// EndpointSlices, the operator's record pass) is done.
func settle(ctx context.Context, cs kubernetes.Interface) error {
	last, stable := -1.0, 0
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		w, err := apiWrites(ctx, cs)
		if err != nil {
			return err
		}
		n := 0.0
		for res, c := range w {
			if !slices.Contains(background, res) {
				n += c
			}
		}
		if n == last {
			if stable++; stable == 4 {
				return nil
			}
		} else {
			stable = 0
		}
		last = n
		time.Sleep(250 * time.Millisecond)
	}
	return errors.New("the control plane's writes did not settle within 2m")
}

// cpuSeconds returns the CPU time (user and system) used so far by this
// program and each process it started (kube-apiserver, etcd,
// kube-controller-manager, kwok, portico-operator), by command name.
func cpuSeconds() map[string]float64 {
	out := map[string]float64{}
	self := os.Getpid()
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime stime: fields 14 and 15.
		open, end := strings.IndexByte(string(data), '('), strings.LastIndexByte(string(data), ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(data[open+1 : end])
		f := strings.Fields(string(data[end+1:]))
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); pid != self && ppid != self {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		out[comm] += (utime + stime) / clockTicks
	}
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat times.
const clockTicks = 100

// cpuSince prints the CPU seconds used since before, by process.
func cpuSince(after, before map[string]float64) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(after)) {
		parts = append(parts, fmt.Sprintf("%s=%.1f", name, after[name]-before[name]))
	}
	return strings.Join(parts, " ")
}

// saveAPIServerProfile writes kube-apiserver's 10-second CPU profile
// (/debug/pprof, served to the cluster admin) to path.
func saveAPIServerProfile(ctx context.Context, cfg *rest.Config, path string) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	return testenv.SaveProfileFrom(ctx, hc, strings.TrimSuffix(cfg.Host, "/")+"/debug/pprof/profile?seconds=10", path)
}
