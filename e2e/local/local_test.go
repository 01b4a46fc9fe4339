// Package local_test is the end-to-end test of local mode: a real
// kube-apiserver, etcd and kube-controller-manager, the operator with the
// local backend in-process, three node namespaces on one bridge each kept
// alive by a kubelet-like heartbeat and running the real portico-forwarder
// binary against the apiserver, and a client namespace. A forwarder that
// panics or exits on its own fails the test.
//
// Until the data plane lands (nftables, next issue), each node stands in
// for it by carrying the address on its loopback (arp_ignore=1, so only the
// forwarder answers ARP) and serving TCP on it with its own name: a TCP
// connection then proves which node the client's traffic reaches.
package local_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/e2e/netlab"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/local"
)

var class = providers.Class(local.Name)

type world struct {
	t      *testing.T
	env    *testenv.Env
	lab    *netlab.Lab
	nodes  []*node
	client *netlab.Host
	ns     string
	bin    string
	// keyFile holds the heartbeat key every forwarder is given.
	keyFile string
	stop    chan struct{}
}

type node struct {
	host *netlab.Host
	name string // Node object name
	proc *testenv.Process
	log  string

	serve map[netip.Addr]net.Listener
}

// forwarderBinary builds the forwarder from this tree (never a stale bin/).
func forwarderBinary(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "portico-forwarder")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/portico-forwarder").CombinedOutput()
	if err != nil {
		t.Fatalf("building forwarder: %v\n%s", err, out)
	}
	return bin
}

func setup(t *testing.T) *world {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	w := &world{t: t, bin: forwarderBinary(t), stop: make(chan struct{})}
	w.keyFile = filepath.Join(t.TempDir(), "heartbeat.key")
	if err := os.WriteFile(w.keyFile, []byte(rand.Text()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.env = testenv.StartWith(t, testenv.Options{Controllers: true})
	lab, err := netlab.New()
	if err != nil {
		t.Fatal(err)
	}
	w.lab = lab
	t.Cleanup(lab.Close)
	t.Cleanup(func() { close(w.stop) })
	api, err := url.Parse(w.env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		h, err := lab.AddHost(fmt.Sprintf("n%d", i+1), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, 0, byte(i + 1)}), 24), netip.Prefix{})
		if err != nil {
			t.Fatal(err)
		}
		// The apiserver listens on the host's loopback; relay it into the
		// node namespace at the same address, so the kubeconfig and its
		// certificate work unchanged.
		if err := h.ForwardTCP(api.Host, api.Host, w.stop); err != nil {
			t.Fatal(err)
		}
		n := &node{host: h, name: "e2e-" + lab.ID() + "-" + h.Name, serve: map[netip.Addr]net.Listener{}}
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}}
		obj.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		obj.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.IPv4.Addr().String()}}
		if err := testenv.CreateNodeWithStatus(ctx, w.env.Client, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.env.Client.Delete(context.Background(), obj) })
		hb := testenv.StartHeartbeat(w.env.Client, n.name)
		t.Cleanup(hb.Stop)
		w.nodes = append(w.nodes, n)
	}
	// Ready nodes that run no forwarder (Windows nodes, virtual kubelets),
	// more of them than of forwarders: they must not count towards the
	// quorum, or no node ever has a majority and nothing is announced.
	for i := range 4 {
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e2e-%s-win%d", lab.ID(), i),
			Labels: map[string]string{corev1.LabelOSStable: "windows"}}}
		obj.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		obj.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.88.0.%d", 50+i)}}
		if err := testenv.CreateNodeWithStatus(ctx, w.env.Client, obj); err != nil {
			t.Fatal(err)
		}
		// Their kubelets are alive: the nodes stay Ready.
		hb := testenv.StartHeartbeat(w.env.Client, obj.Name)
		t.Cleanup(func() { hb.Stop(); _ = w.env.Client.Delete(context.Background(), obj) })
	}
	if w.client, err = lab.AddHost("cl", netip.MustParsePrefix("10.88.0.100/24"), netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range w.nodes {
		w.startForwarder(n)
	}
	t.Cleanup(func() {
		for _, n := range w.nodes {
			w.stopForwarder(n)
		}
	})
	w.ns = "e2e-" + lab.ID()
	if err := w.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) startForwarder(n *node) {
	n.log = filepath.Join(w.t.TempDir(), n.host.Name+".log")
	// StartChecked fails the test if this forwarder panics or exits before
	// stopForwarder or the end of the test stops it.
	n.proc = testenv.StartChecked(w.t, "forwarder "+n.name, n.host.Command(w.bin, "--kubeconfig", w.env.Kubeconfig, "--node-name", n.name, "--interface", n.host.Link, "--zap-log-level", "1",
		"--heartbeat-key-file", w.keyFile, "--namespace", "default",
		// This test proves announcement; its nodes serve the address themselves
		// (see the package doc), so the nftables data plane stays off here and
		// is proven by e2e/dataplane.
		"--no-dataplane"), testenv.ProcessOptions{Log: n.log, CleanExit: true})
}

func (w *world) stopForwarder(n *node) {
	if n.proc == nil {
		return
	}
	if err := n.proc.Stop(); err != nil {
		w.t.Error(err)
	}
	n.proc = nil
}

func (w *world) dumpLogs() {
	if !w.t.Failed() {
		return
	}
	for _, n := range w.nodes {
		b, _ := os.ReadFile(n.log)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		w.t.Logf("forwarder %s log tail:\n%s", n.name, strings.Join(lines, "\n"))
	}
}

// serveOn makes every node accept TCP on ip:80 and answer with its name,
// standing in for the data plane.
func (w *world) serveOn(ip netip.Addr) {
	for _, n := range w.nodes {
		if _, err := n.host.IP("addr", "replace", ip.String()+"/32", "dev", "lo"); err != nil {
			w.t.Fatal(err)
		}
		var ln net.Listener
		if err := n.host.Do(func() (err error) { ln, err = net.Listen("tcp", netip.AddrPortFrom(ip, 80).String()); return err }); err != nil {
			w.t.Fatal(err)
		}
		name := n.name
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(name + "\n"))
				c.Close()
			}
		}()
		w.t.Cleanup(func() { ln.Close() })
	}
}

// dial connects from the client to ip:80 and returns the answering node.
func (w *world) dial(ip netip.Addr) (string, error) {
	var line string
	err := w.client.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, 80).String(), 500*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

func (w *world) nodeByName(name string) *node {
	for _, n := range w.nodes {
		if n.name == name {
			return n
		}
	}
	w.t.Fatalf("no node %q", name)
	return nil
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", d, err)
}

type operatorRun struct {
	cancel context.CancelFunc
	done   chan error
}

// startOperator runs the operator in-process with a fresh local backend, as
// after a restart: the backend rebuilds its allocations from the cluster.
func (w *world) startOperator() *operatorRun {
	o := operator.DefaultOptions()
	o.Providers = []string{local.Name}
	o.ClusterID = "e2e"
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 100 * time.Millisecond
	o.RetryBase, o.RetryMax = 50*time.Millisecond, time.Second
	o.ConfigErrorBackoff = 2 * time.Second
	var rec *controllers.ServiceReconciler
	var recMu sync.Mutex
	p, err := local.New(local.Options{ClusterID: o.ClusterID, Client: w.env.Client, OnRelease: func() {
		recMu.Lock()
		defer recMu.Unlock()
		if rec != nil {
			rec.NotifyPending(class)
		}
	}})
	if err != nil {
		w.t.Fatal(err)
	}
	o.Instances = map[string]providers.Provider{class: p}
	ctx, cancel := context.WithCancel(context.Background())
	mgr, r, err := operator.New(ctx, w.env.Config, o)
	if err != nil {
		cancel()
		w.t.Fatal(err)
	}
	recMu.Lock()
	rec = r
	recMu.Unlock()
	if err := (&local.IPPoolReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		cancel()
		w.t.Fatal(err)
	}
	run := &operatorRun{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- mgr.Start(ctx) }()
	return run
}

func (o *operatorRun) stop(t *testing.T) {
	o.cancel()
	select {
	case err := <-o.done:
		if err != nil {
			t.Errorf("operator: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("operator did not stop")
	}
}

func (w *world) service(name string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &class,
			Ports:             []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := w.env.Client.Create(context.Background(), svc); err != nil {
		w.t.Fatal(err)
	}
	return svc
}

func (w *world) address(name string) (netip.Addr, error) {
	var svc corev1.Service
	if err := w.env.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: name}, &svc); err != nil {
		return netip.Addr{}, err
	}
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		return netip.Addr{}, fmt.Errorf("service %s has no address yet", name)
	}
	return netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
}

// announcer reads the node LoadBalancer status names for ip.
func (w *world) announcer(name string, ip netip.Addr) (string, error) {
	var lb lbv1.LoadBalancer
	if err := w.env.Client.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: name}, &lb); err != nil {
		return "", err
	}
	for _, a := range lb.Status.Announcements {
		if a.Address == ip.String() {
			return a.Node, nil
		}
	}
	return "", fmt.Errorf("no announcement for %s in %+v", ip, lb.Status.Announcements)
}

// carried checks that ARP, TCP and the published status all agree that
// node carries ip.
func (w *world) carried(name string, ip netip.Addr, not string) string {
	w.t.Helper()
	var owner string
	eventually(w.t, 15*time.Second, func() error {
		var err error
		if owner, err = w.announcer(name, ip); err != nil {
			return err
		}
		if owner == not {
			return fmt.Errorf("still announced by %s", not)
		}
		got, err := w.dial(ip)
		if err != nil {
			return fmt.Errorf("TCP to %s: %w", ip, err)
		}
		if got != owner {
			return fmt.Errorf("TCP to %s reached %s, status says %s", ip, got, owner)
		}
		mac, err := w.client.Neighbor(ip)
		if err != nil {
			return err
		}
		if want := w.nodeByName(owner).host.MAC.String(); mac != want {
			return fmt.Errorf("client resolves %s to %s, want %s (%s)", ip, mac, want, owner)
		}
		return nil
	})
	return owner
}

func TestLocalMode(t *testing.T) {
	w := setup(t)
	t.Cleanup(w.dumpLogs)
	ctx := context.Background()
	pool := &lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + w.lab.ID()}, Spec: lbv1.IPPoolSpec{Addresses: []string{"10.88.0.200-10.88.0.201"}}}
	if err := w.env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.env.Client.Delete(context.Background(), pool) })
	op := w.startOperator()
	stopped := false
	t.Cleanup(func() {
		// Delete the Services while an operator runs, so finalizers go.
		if stopped {
			op = w.startOperator()
		}
		var svcs corev1.ServiceList
		_ = w.env.Client.List(context.Background(), &svcs, client.InNamespace(w.ns))
		for i := range svcs.Items {
			_ = w.env.Client.Delete(context.Background(), &svcs.Items[i])
		}
		eventually(t, 30*time.Second, func() error {
			var left corev1.ServiceList
			_ = w.env.Client.List(context.Background(), &left, client.InNamespace(w.ns))
			if len(left.Items) > 0 {
				return fmt.Errorf("%d Services left", len(left.Items))
			}
			return nil
		})
		op.stop(t)
	})

	w.service("web")
	var ip netip.Addr
	eventually(t, 20*time.Second, func() (err error) { ip, err = w.address("web"); return err })
	if !netip.MustParsePrefix("10.88.0.200/31").Contains(ip) {
		t.Fatalf("web got %s, outside the pool", ip)
	}
	w.serveOn(ip)
	first := w.carried("web", ip, "")
	t.Logf("%s announced by %s", ip, first)

	// Exactly one node answers: no other node's MAC ever appears.
	for range 5 {
		if got, err := w.dial(ip); err != nil || got != first {
			t.Fatalf("steady state: TCP reached %q (%v), want %s", got, err, first)
		}
	}

	// Stopping the announcing node's forwarder moves the address.
	w.stopForwarder(w.nodeByName(first))
	second := w.carried("web", ip, first)
	t.Logf("after stopping %s's forwarder, %s announces", first, second)
	w.startForwarder(w.nodeByName(first))

	// Cutting the announcing node's link moves it again.
	if err := w.nodeByName(second).host.SetCable(false); err != nil {
		t.Fatal(err)
	}
	third := w.carried("web", ip, second)
	t.Logf("after cutting %s's link, %s announces", second, third)
	if err := w.nodeByName(second).host.SetCable(true); err != nil {
		t.Fatal(err)
	}
	events := &corev1.EventList{}
	eventually(t, 10*time.Second, func() error {
		if err := w.env.Client.List(ctx, events, client.InNamespace(w.ns)); err != nil {
			return err
		}
		for _, e := range events.Items {
			if e.Reason == "AnnouncerChanged" && e.InvolvedObject.Name == "web" {
				return nil
			}
		}
		return fmt.Errorf("no AnnouncerChanged event among %d", len(events.Items))
	})
	// The cut node's forwarder said so on its Node (sent once it could reach
	// the apiserver again), and did not exit.
	eventually(t, 10*time.Second, func() error {
		var evs eventsv1.EventList
		if err := w.env.Client.List(ctx, &evs, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "InterfaceDown" && e.Regarding.Name == second {
				return nil
			}
		}
		return fmt.Errorf("no InterfaceDown event on Node %s", second)
	})
	select {
	case <-w.nodeByName(second).proc.Done():
		t.Fatalf("the forwarder of %s exited after its link was cut", second)
	default:
	}

	// Exhaust the pool: the third Service stays pending with a condition
	// naming the pool.
	w.service("api")
	var apiIP netip.Addr
	eventually(t, 20*time.Second, func() (err error) { apiIP, err = w.address("api"); return err })
	w.service("pending")
	eventually(t, 20*time.Second, func() error {
		var svc corev1.Service
		if err := w.env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: "pending"}, &svc); err != nil {
			return err
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, controllers.ConditionReady)
		if c == nil || c.Reason != "PoolExhausted" || !strings.Contains(c.Message, pool.Name) {
			return fmt.Errorf("pending Service condition %+v", c)
		}
		return nil
	})
	eventually(t, 20*time.Second, func() error {
		var p lbv1.IPPool
		if err := w.env.Client.Get(ctx, client.ObjectKeyFromObject(pool), &p); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(p.Status.Conditions, local.IPPoolExhausted); c == nil || c.Status != metav1.ConditionTrue || p.Status.Assigned != 2 {
			return fmt.Errorf("pool status %+v", p.Status)
		}
		return nil
	})

	// An operator restart keeps every address.
	op.stop(t)
	stopped = true
	op = w.startOperator()
	stopped = false
	time.Sleep(2 * time.Second)
	for name, want := range map[string]netip.Addr{"web": ip, "api": apiIP} {
		if got, err := w.address(name); err != nil || got != want {
			t.Errorf("after operator restart %s has %v (%v), want %s", name, got, err, want)
		}
	}
	if _, err := w.address("pending"); err == nil {
		t.Error("the pending Service got an address although the pool is full")
	}

	// Deleting a Service hands its address to the pending one.
	var api corev1.Service
	if err := w.env.Client.Get(ctx, client.ObjectKey{Namespace: w.ns, Name: "api"}, &api); err != nil {
		t.Fatal(err)
	}
	if err := w.env.Client.Delete(ctx, &api); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		got, err := w.address("pending")
		if err != nil {
			return err
		}
		if got != apiIP {
			return fmt.Errorf("pending got %s, want the freed %s", got, apiIP)
		}
		return nil
	})
	if slices.Contains([]netip.Addr{ip}, apiIP) {
		t.Fatal("two Services share an address")
	}
}

// TestLocalTrafficPolicy: with externalTrafficPolicy Local only a node with a
// ready endpoint may announce, and the address follows the endpoint.
func TestLocalTrafficPolicy(t *testing.T) {
	w := setup(t)
	t.Cleanup(w.dumpLogs)
	ctx := context.Background()
	pool := &lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + w.lab.ID()}, Spec: lbv1.IPPoolSpec{Addresses: []string{"10.88.0.210/32"}}}
	if err := w.env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.env.Client.Delete(context.Background(), pool) })
	op := w.startOperator()
	t.Cleanup(func() {
		var svcs corev1.ServiceList
		_ = w.env.Client.List(context.Background(), &svcs, client.InNamespace(w.ns))
		for i := range svcs.Items {
			_ = w.env.Client.Delete(context.Background(), &svcs.Items[i])
		}
		eventually(t, 30*time.Second, func() error {
			var left corev1.ServiceList
			_ = w.env.Client.List(context.Background(), &left, client.InNamespace(w.ns))
			if len(left.Items) > 0 {
				return fmt.Errorf("%d Services left", len(left.Items))
			}
			return nil
		})
		op.stop(t)
	})

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "loc"},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:     &class,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              map[string]string{"app": "loc"},
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if err := w.env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	// A Pod on the third node; the EndpointSlice controller publishes it.
	// (The nodes serve the address themselves, see the package doc, so
	// the pod's address carries no traffic.)
	host := w.nodes[2]
	w.runPod("loc-1", host, "10.244.2.5")
	var ip netip.Addr
	eventually(t, 20*time.Second, func() (err error) { ip, err = w.address("loc"); return err })
	w.serveOn(ip)
	if got := w.carried("loc", ip, ""); got != host.name {
		t.Fatalf("announced by %s, but only %s has an endpoint", got, host.name)
	}
	// Move the endpoint, as a rollout does: the address follows.
	other := w.nodes[0]
	w.runPod("loc-2", other, "10.244.0.5")
	if err := w.env.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "loc-1"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if got := w.carried("loc", ip, host.name); got != other.name {
		t.Fatalf("after moving the endpoint to %s, %s announces", other.name, got)
	}
}

// runPod runs a Pod selected by Service "loc" on n at ip.
func (w *world) runPod(name string, n *node, ip string) {
	w.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name, Labels: map[string]string{"app": "loc"}},
		Spec: corev1.PodSpec{NodeName: n.name}}
	if err := testenv.RunPod(context.Background(), w.env.Client, pod, ip); err != nil {
		w.t.Fatal(err)
	}
}
