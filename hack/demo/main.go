// Command demo runs Portico's main job on one Linux machine ("make demo"):
// a real kube-apiserver, etcd and kube-controller-manager, the operator with
// the local backend, three node namespaces on a bridge each running the real
// portico-forwarder (ARP announcement + nftables), two pods serving HTTP
// behind the nodes, a LoadBalancer Service whose EndpointSlice the real
// EndpointSlice controller builds from the pods, and a client namespace that
// requests the Service through its load-balancer address.
//
// It stays up until Ctrl-C and then removes everything, exiting 0 when the
// teardown is clean (see supervise). "demo --down" removes what a killed
// demo left behind.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/e2e/netlab"
)

// state is what --down needs to clean up after a demo that was killed.
type state struct {
	PID        int    `json:"pid"`
	LabID      string `json:"labID"`
	Kubeconfig string `json:"kubeconfig"`
	Children   []int  `json:"children"`
}

func main() {
	down := flag.Bool("down", false, "Tear down what a running or killed demo left behind, then exit.")
	forwarder := flag.String("forwarder", "bin/portico-forwarder", "The portico-forwarder binary to run on every node.")
	stateDir := flag.String("state-dir", ".demo", "Where the demo records what --down must remove.")
	flag.Parse()
	if !*down && os.Getenv(workerEnv) == "" {
		os.Exit(supervise(os.Args[1:]))
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	var err error
	if *down {
		err = teardown(*stateDir)
	} else {
		err = run(*forwarder, *stateDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(forwarder, stateDir string) (err error) {
	// Ctrl-C, as the supervisor relays it. Caught from the start: a Ctrl-C
	// during start-up ends the demo, with its teardown, once it is up,
	// rather than killing it half-built.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, stopSignal)
	if os.Geteuid() != 0 {
		return errors.New("run as root: the demo creates network namespaces and nftables tables")
	}
	if _, err := os.Stat(filepath.Join(stateDir, "state.json")); err == nil {
		return fmt.Errorf("a demo is running or was killed; run 'make demo DOWN=1' first")
	}
	bin, err := filepath.Abs(forwarder)
	if err != nil {
		return err
	}
	step("Starting kube-apiserver, etcd and kube-controller-manager (built from pinned sources), three nodes and a client")
	c, err := cluster.Start(cluster.Options{ForwarderBin: bin, LogDir: filepath.Join(stateDir, "logs")})
	if err != nil {
		return err
	}
	defer func() {
		step("Tearing down")
		if cerr := c.Close(); cerr != nil {
			// A forwarder or a control plane component panicked or died.
			err = errors.Join(err, cerr)
		}
		_ = os.RemoveAll(stateDir)
	}()
	if err := saveState(stateDir, c); err != nil {
		return err
	}
	step("Starting portico-operator with the local backend")
	if err := c.StartOperator(); err != nil {
		return err
	}

	ctx := context.Background()
	ns := "demo"
	objs := []client.Object{ // the namespace comes with the first pod
		&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "demo"}, Spec: lbv1.IPPoolSpec{Addresses: []string{"10.88.0.200-10.88.0.220"}}},
	}
	step("Creating IPPool demo (10.88.0.200-10.88.0.220) and two pods serving HTTP on :8080")
	for i, n := range c.Nodes[:2] {
		p, err := c.AddPod(n, ns, fmt.Sprintf("web-%d", i+1), 9090, map[string]string{"app": "web"}) // echo server on 9090; HTTP on 8080
		if err != nil {
			return err
		}
		if err := serveHTTP(p); err != nil {
			return err
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To("lb.portico.dev/local"),
			Selector:          map[string]string{"app": "web"},
			Ports:             []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	objs = append(objs, svc)
	step("Creating Service web (type LoadBalancer, class lb.portico.dev/local); kube-controller-manager publishes its pods")
	for _, o := range objs {
		if err := c.Env.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}

	ip, err := waitForAddress(ctx, c, client.ObjectKeyFromObject(svc))
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let the announcing forwarder publish itself
	kubectl(c, "get", "svc", "-n", ns, "-o", "wide")
	kubectl(c, "get", "loadbalancers", "-n", ns, "-o", "wide")
	kubectl(c, "get", "ippools")

	step(fmt.Sprintf("Requesting http://%s/ from the client namespace (%s)", ip, c.Client.IPv4.Addr()))
	for range 4 {
		body, err := get(c.Client, "http://"+ip+"/")
		if err != nil {
			return fmt.Errorf("request through the load-balancer address: %w", err)
		}
		fmt.Printf("  %s", body)
	}

	fmt.Printf("\nPortico is running. Try, in another shell:\n"+
		"  export KUBECONFIG=%s\n"+
		"  %s get svc,loadbalancers -A\n"+
		"  ip netns exec %s curl -s http://%s/\n"+
		"Press Ctrl-C to stop and remove everything.\n", c.Env.Kubeconfig, filepath.Join(c.Env.BinDir, "kubectl"), c.Client.NS, ip)
	// A forwarder or control plane component that panics or dies ends the
	// demo with an error; Close, on the way out, says which and why.
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case <-sig:
			return nil
		case <-check.C:
			if c.Err() != nil {
				return errors.New("a Portico process or control plane component failed")
			}
		}
	}
}

func step(msg string) { fmt.Printf("==> %s\n", msg) }

// serveHTTP runs an HTTP server on :8080 inside the pod that names the pod
// and the client address it saw.
func serveHTTP(p *cluster.Pod) error {
	var ln net.Listener
	if err := p.Host.Do(func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		return err
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from pod %s on node %s; you are %s\n", p.Name, p.Node.Name, r.RemoteAddr)
		}))
	}()
	return nil
}

// get requests url from inside h: the connection is dialled on a thread
// switched into h's namespace, so the request never leaves the lab.
func get(h *netlab.Host, url string) (string, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		Proxy:             nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := h.Do(func() (err error) {
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second, Transport: tr}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %s", resp.Status)
	}
	return string(b), err
}

func waitForAddress(ctx context.Context, c *cluster.Cluster, key client.ObjectKey) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		svc := &corev1.Service{}
		if err := c.Env.Client.Get(ctx, key, svc); err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
			ip := svc.Status.LoadBalancer.Ingress[0].IP
			if _, err := get(c.Client, "http://"+ip+"/"); err == nil {
				return ip, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", errors.New("the Service got no working address within 60s")
}

func kubectl(c *cluster.Cluster, args ...string) {
	fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
	cmd := c.Env.Kubectl(args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}

func saveState(dir string, c *cluster.Cluster) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st := state{PID: os.Getpid(), LabID: c.Lab.ID(), Kubeconfig: c.Env.Kubeconfig}
	if out, err := exec.Command("pgrep", "-P", strconv.Itoa(os.Getpid())).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				st.Children = append(st.Children, pid)
			}
		}
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(filepath.Join(dir, "state.json"), b, 0o644)
}

// teardown stops a running demo (which cleans up after itself) or removes
// what a killed one left: its processes and its network namespaces.
func teardown(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("no demo state found; nothing to tear down")
		return nil
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if syscall.Kill(st.PID, stopSignal) == nil {
		for i := 0; i < 100 && syscall.Kill(st.PID, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, pid := range append([]int{st.PID}, st.Children...) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "pl-"+st.LabID+"-") {
			name := f[0]
			_, _ = netlab.Run("ip", "netns", "del", name)
		}
	}
	if st.Kubeconfig != "" {
		_ = os.RemoveAll(filepath.Dir(st.Kubeconfig))
	}
	fmt.Printf("removed demo %s (pid %d)\n", st.LabID, st.PID)
	return os.RemoveAll(dir)
}
