// Command scale measures the operator starting against a large cluster
// (make bench-scale): --nodes kwok nodes and --services LoadBalancer Services
// of the memory class are created while the operator is stopped, as after an
// upgrade or a leader change; then the portico-operator binary starts.
//
// The control plane is the real kube-apiserver and etcd with kwok keeping the
// Nodes (created Ready; kwok renews their Leases every quarter of
// --kwok-lease and refreshes their status every 10 to 20 minutes). No
// kube-controller-manager runs: the node lifecycle controller would mark
// nodes Unknown between the long Lease renewals, and nothing here needs
// EndpointSlices.
//
// It measures:
//   - all_ready_s: from the operator's start to the last Service having an
//     address (seen through a watch);
//   - writes_per_service: the apiserver's write requests (POST, PUT, PATCH,
//     DELETE on services, loadbalancers and events; from its
//     apiserver_request_total) from the operator's start until writes stop,
//     per Service;
//   - heartbeat: a heartbeat of every node (the Ready condition's
//     lastHeartbeatTime, as kubelet and kwok post it) must cause no provider
//     call (the operator's portico_provider_calls_total) and no write;
//   - node_flap_calls: provider calls caused by one node going NotReady and
//     coming back;
//   - operator_rss_mb: the operator's peak RSS (VmHWM).
//
// The last line is:
//
//	scale: nodes=<n> services=<n> all_ready_s=<n> writes_per_service=<n> node_flap_calls=<n> operator_rss_mb=<n>
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/testenv"
)

const namespace = "scale"

type config struct {
	nodes, services int
	workers         int
	kwokLease       time.Duration
	operatorBin     string
	heapProfile     string
	peakProfile     string
	readyTimeout    time.Duration
}

func main() {
	var cfg config
	flag.IntVar(&cfg.nodes, "nodes", 5000, "kwok Nodes.")
	flag.IntVar(&cfg.services, "services", 10000, "LoadBalancer Services of class lb.portico.dev/memory.")
	flag.IntVar(&cfg.workers, "workers", 32, "Operator --workers.")
	flag.DurationVar(&cfg.kwokLease, "kwok-lease", 5*time.Minute, "Node Lease duration kwok keeps (renewed every quarter of it). The kubelet default, 40s, is 500 Lease writes per second at 5,000 nodes, more than two shared cores carry beside the rest.")
	flag.StringVar(&cfg.operatorBin, "operator", "bin/portico-operator", "Path of the portico-operator binary.")
	flag.StringVar(&cfg.heapProfile, "heap-profile", "", "Write the operator's heap profile, taken when the last Service got its address, to this file.")
	flag.StringVar(&cfg.peakProfile, "peak-heap-profile", "", "Write the operator's heap profile, taken at the end of the flap phase (after the RSS peak), to this file.")
	flag.DurationVar(&cfg.readyTimeout, "ready-timeout", 15*time.Minute, "Give up when not every Service has an address this long after the operator's start.")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func run(cfg config) (err error) {
	env, err := testenv.NewWith(testenv.Options{Kwok: true, KwokLeaseDuration: cfg.kwokLease,
		// One node port per Service: the default range holds 2,768.
		NodePortRange: "20000-32767"})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel() // ends the watch, which would hold the apiserver's shutdown
		if serr := env.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	pcfg := rest.CopyConfig(env.Config)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return err
	}

	start := time.Now()
	if err := parallel(cfg.nodes, 32, func(i int) error {
		n := gen.Node(nodeName(i), fmt.Sprintf("10.%d.%d.%d", 200+i/62500, i/250%250, i%250+1))
		n.Annotations = map[string]string{testenv.KwokNodeAnnotation: testenv.KwokNodeValue}
		n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
		return testenv.CreateNodeWithStatus(ctx, env.Client, n)
	}); err != nil {
		return fmt.Errorf("creating nodes: %w", err)
	}
	nodesTook := time.Since(start)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	start = time.Now()
	if err := parallel(cfg.services, 64, func(i int) error {
		svc := gen.Service(namespace, fmt.Sprintf("svc-%d", i), gen.WithClass("lb.portico.dev/memory"), gen.ForAPI())
		_, err := cs.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("creating services: %w", err)
	}
	fmt.Printf("setup: nodes=%d nodes_s=%.1f services=%d services_s=%.1f kwok_lease=%s\n",
		cfg.nodes, nodesTook.Seconds(), cfg.services, time.Since(start).Seconds(), cfg.kwokLease)

	w, err := watchAddresses(ctx, cs, cfg.services)
	if err != nil {
		return err
	}
	writesBefore, err := apiserverWrites(ctx, cs)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	opStart := time.Now()
	args := []string{"--kubeconfig", env.Kubeconfig, "--providers", "memory", "--memory-ipv4-range", "10.128.0.0/14",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port), "--metrics-secure=false", "--health-probe-bind-address", "0",
		"--workers", strconv.Itoa(cfg.workers), "--kube-api-qps", "5000", "--kube-api-burst", "10000",
		"--zap-log-level", "error"}
	pprofAddr := ""
	if cfg.heapProfile != "" || cfg.peakProfile != "" {
		pport, err := freePort()
		if err != nil {
			return err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", pport)
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	op, err := testenv.StartProcess("portico-operator", exec.Command(cfg.operatorBin, args...), testenv.ProcessOptions{CleanExit: true})
	if err != nil {
		return err
	}
	defer func() {
		if perr := op.Stop(); perr != nil {
			err = errors.Join(err, fmt.Errorf("%w\n%s", perr, op.Tail(30)))
		}
	}()

	rss := newRSSSampler(op.Pid())
	defer rss.stop()

	select {
	case <-w.all:
	case <-op.Done():
		return fmt.Errorf("operator exited: %v\n%s", op.Err(), op.Tail(30))
	case <-time.After(cfg.readyTimeout):
		return fmt.Errorf("%d of %d Services have an address %s after the operator's start", w.count(), cfg.services, cfg.readyTimeout)
	}
	allReady := w.readyAt().Sub(opStart)
	fmt.Printf("ready: services=%d all_ready_s=%.1f\n", cfg.services, allReady.Seconds())
	rss.phase("ready")
	if cfg.heapProfile != "" {
		if err := testenv.SaveProfile(ctx, pprofAddr, "heap", cfg.heapProfile); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
	}

	// The operator goes on writing status and Events after the addresses;
	// count until it stops.
	writesAfter, settled := settle(ctx, func() (float64, error) { return apiserverWrites(ctx, cs) }, 5*time.Second, 5*time.Minute)
	if !settled {
		fmt.Println("warning: writes had not stopped 5 minutes after the last address")
	}
	writes := writesAfter - writesBefore
	fmt.Printf("writes: total=%.0f per_service=%.2f settled_s=%.1f\n", writes, writes/float64(cfg.services), time.Since(opStart).Seconds())
	rss.phase("settle")

	// A heartbeat of every node.
	calls0, err := providerCalls(metricsURL)
	if err != nil {
		return err
	}
	writes0, err := apiserverWrites(ctx, cs)
	if err != nil {
		return err
	}
	if err := parallel(cfg.nodes, 32, func(i int) error {
		return setReady(ctx, cs, nodeName(i), corev1.ConditionTrue)
	}); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	time.Sleep(5 * time.Second) // several node batch windows
	calls1, err := providerCalls(metricsURL)
	if err != nil {
		return err
	}
	writes1, _ := settle(ctx, func() (float64, error) { return apiserverWrites(ctx, cs) }, 3*time.Second, time.Minute)
	hbCalls, hbWrites := calls1-calls0, writes1-writes0
	fmt.Printf("heartbeat: nodes=%d provider_calls=%.0f writes=%.0f\n", cfg.nodes, hbCalls, hbWrites)
	rss.phase("heartbeat")

	// One node flaps: NotReady, then Ready again.
	flapStart := time.Now()
	for _, status := range []corev1.ConditionStatus{corev1.ConditionFalse, corev1.ConditionTrue} {
		if err := setReady(ctx, cs, nodeName(0), status); err != nil {
			return fmt.Errorf("flap: %w", err)
		}
		if _, ok := settle(ctx, func() (float64, error) { return providerCalls(metricsURL) }, 5*time.Second, 5*time.Minute); !ok {
			fmt.Println("warning: provider calls had not stopped 5 minutes after the flap")
		}
	}
	calls2, err := providerCalls(metricsURL)
	if err != nil {
		return err
	}
	writes2, _ := settle(ctx, func() (float64, error) { return apiserverWrites(ctx, cs) }, 3*time.Second, 5*time.Minute)
	flapCalls := calls2 - calls1
	fmt.Printf("flap: provider_calls=%.0f writes=%.0f took_s=%.1f\n", flapCalls, writes2-writes1, time.Since(flapStart).Seconds())
	rss.phase("flap")
	if cfg.peakProfile != "" {
		if err := testenv.SaveProfile(ctx, pprofAddr, "heap", cfg.peakProfile); err != nil {
			return fmt.Errorf("peak heap profile: %w", err)
		}
	}

	if err := op.Err(); err != nil {
		return err
	}
	peak, err := peakRSSMB(op.Pid())
	if err != nil {
		return err
	}
	fmt.Printf("goals: all_ready_within_60s=%s heartbeat_zero_calls_and_writes=%s operator_rss_within_300mb=%s\n",
		met(allReady <= time.Minute), met(hbCalls == 0 && hbWrites == 0), met(peak <= 300))
	fmt.Printf("scale: nodes=%d services=%d all_ready_s=%.0f writes_per_service=%.1f node_flap_calls=%.0f operator_rss_mb=%d\n",
		cfg.nodes, cfg.services, allReady.Seconds(), writes/float64(cfg.services), flapCalls, peak)
	return nil
}

func nodeName(i int) string { return fmt.Sprintf("scale-node-%d", i) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// parallel runs f(0..n-1) with at most width in flight and returns the
// first error.
func parallel(n, width int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, width)
	for range width {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// setReady posts the node's Ready condition with a fresh heartbeat time:
// with status unchanged, that is a heartbeat.
func setReady(ctx context.Context, cs kubernetes.Interface, name string, status corev1.ConditionStatus) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		for i, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != status {
					n.Status.Conditions[i].Status, n.Status.Conditions[i].LastTransitionTime = status, now
				}
				n.Status.Conditions[i].LastHeartbeatTime = now
			}
		}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// settle polls read until its value has not changed for quiet, at most for
// limit, and returns the last value and whether it settled.
func settle(ctx context.Context, read func() (float64, error), quiet, limit time.Duration) (float64, bool) {
	deadline := time.Now().Add(limit)
	last, _ := read()
	since := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Second)
		v, err := read()
		if err != nil {
			continue
		}
		if v != last {
			last, since = v, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return last, true
		}
	}
	return last, false
}

// addressWatch follows Services until every one has an address.
type addressWatch struct {
	mu      sync.Mutex
	ready   map[string]bool
	want    int
	lastAt  time.Time
	all     chan struct{}
	allOnce sync.Once
}

func (w *addressWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ready)
}

func (w *addressWatch) readyAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastAt
}

func (w *addressWatch) see(svc *corev1.Service) {
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ready[svc.Name] {
		return
	}
	w.ready[svc.Name] = true
	w.lastAt = time.Now()
	if len(w.ready) >= w.want {
		w.allOnce.Do(func() { close(w.all) })
	}
}

func watchAddresses(ctx context.Context, cs kubernetes.Interface, want int) (*addressWatch, error) {
	w := &addressWatch{ready: map[string]bool{}, want: want, all: make(chan struct{})}
	list, err := cs.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		w.see(&list.Items[i])
	}
	rv := list.ResourceVersion
	go func() {
		for ctx.Err() == nil {
			wi, err := cs.CoreV1().Services(namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				svc, ok := ev.Object.(*corev1.Service)
				if !ok {
					continue
				}
				rv = svc.ResourceVersion
				if ev.Type != watch.Deleted && ev.Type != watch.Bookmark {
					w.see(svc)
				}
			}
		}
	}()
	return w, nil
}

// apiserverWrites sums the apiserver's write requests on the resources the
// operator writes (Services and their status, LoadBalancer records and
// their status, Events). Nothing else writes them during the measurement:
// kwok writes Nodes, Leases and Pods.
func apiserverWrites(ctx context.Context, cs kubernetes.Interface) (float64, error) {
	body, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("apiserver metrics: %w", err)
	}
	return sumMetric(string(body), "apiserver_request_total", func(l map[string]string) bool {
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY":
		default:
			return false
		}
		switch l["resource"] {
		case "services", "loadbalancers", "events":
			return true
		}
		return false
	}), nil
}

// providerCalls sums the operator's portico_provider_calls_total.
func providerCalls(url string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, fmt.Errorf("operator metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("operator metrics: %s", resp.Status)
	}
	return sumMetric(string(body), "portico_provider_calls_total", func(map[string]string) bool { return true }), nil
}

// sumMetric adds the samples of a counter in Prometheus' text format whose
// labels keep accepts.
func sumMetric(text, name string, keep func(map[string]string) bool) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		labels := map[string]string{}
		rest := strings.TrimPrefix(line, name)
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			for _, kv := range splitLabels(rest[1:end]) {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					labels[k] = strings.Trim(v, `"`)
				}
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 || !keep(labels) {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func peakRSSMB(pid int) (int, error) { return procStatusMB(pid, "VmHWM") }

// procStatusMB reads a kB field of /proc/<pid>/status in MB.
func procStatusMB(pid int, field string) (int, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssSampler samples the operator's VmRSS every second and prints, at the
// end of each phase, the highest sample since the previous phase ended: it
// shows in which phase the peak RSS (VmHWM) is reached.
type rssSampler struct {
	pid  int
	mu   sync.Mutex
	max  int
	done chan struct{}
	once sync.Once
}

func newRSSSampler(pid int) *rssSampler {
	s := &rssSampler{pid: pid, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			if mb, err := procStatusMB(pid, "VmRSS"); err == nil {
				s.mu.Lock()
				s.max = max(s.max, mb)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// phase prints the phase's highest RSS sample and starts the next phase.
func (s *rssSampler) phase(name string) {
	s.mu.Lock()
	m := s.max
	s.max = 0
	s.mu.Unlock()
	now, _ := procStatusMB(s.pid, "VmRSS")
	hwm, _ := procStatusMB(s.pid, "VmHWM")
	fmt.Printf("rss: phase=%s max_mb=%d now_mb=%d hwm_mb=%d\n", name, m, now, hwm)
}

func (s *rssSampler) stop() { s.once.Do(func() { close(s.done) }) }
