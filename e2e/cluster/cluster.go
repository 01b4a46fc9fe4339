// Package cluster assembles Portico's one-machine stand-in for a cluster: a
// real kube-apiserver, etcd and kube-controller-manager (internal/testenv),
// node network namespaces on one Linux bridge (e2e/netlab) each with a Node
// object kept alive by a kubelet-like heartbeat (Lease and Ready condition)
// and running the real portico-forwarder binary, pods behind nodes
// (dataplane/dptest) that are real Pod objects whose status the lab posts and
// whose EndpointSlices the real EndpointSlice controller writes, optional
// kwok nodes that carry no traffic, a client namespace, and the operator with
// the local backend. The data-plane e2e tests and "make demo" use it.
//
// Every forwarder's output is captured; Err and Close report any that
// panicked or exited without being stopped.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/e2e/netlab"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
)

// Options shape the cluster.
type Options struct {
	// Nodes is the number of node namespaces (default 3).
	Nodes int
	// ForwarderBin is the portico-forwarder binary to run on every node.
	ForwarderBin string
	// ForwarderArgs are extra flags for every forwarder.
	ForwarderArgs []string
	// ForwarderCommand, when set, makes the command that runs a node's
	// forwarder with args (e.g. its container image under podman with
	// --network ns:/run/netns/<netns>); by default ForwarderBin runs inside
	// the node's namespace (ip netns exec).
	ForwarderCommand func(netns string, args []string) *exec.Cmd
	// LogDir receives one log file per forwarder (default a temp dir).
	LogDir string
	// KwokNodes adds Nodes that kwok plays (Ready, Leases, Pods run to
	// Ready) without a namespace or a forwarder: nodes that carry no
	// traffic. They are named kwok-<i> and labelled KwokNodeLabel.
	KwokNodes int
}

// KwokNodeLabel (value "true") marks the kwok nodes, so a Service or IPPool
// can select or exclude them.
const KwokNodeLabel = "portico.dev/kwok-node"

// Cluster is a running stand-in cluster.
type Cluster struct {
	Env    *testenv.Env
	Lab    *netlab.Lab
	Nodes  []*Node
	Client *netlab.Host

	opts     Options
	stop     chan struct{}
	operator *Operator
	pods     []*dptest.Pod
	servers  []*dptest.Server
	nextPod  int

	procMu sync.Mutex
	procs  []*testenv.Process // every forwarder ever started, for Err
}

// Node is one node namespace with its forwarder.
type Node struct {
	Host *netlab.Host
	// Name is the Node object's name.
	Name string
	Log  string

	mu        sync.Mutex
	proc      *testenv.Process
	heartbeat *testenv.Heartbeat
}

// Subnet is the bridge network of nodes and client.
var Subnet = netip.MustParsePrefix("10.88.0.0/24")

// Start builds the cluster: control plane, bridge, nodes with Node objects
// and forwarders, and a client. Close tears everything down.
func Start(opts Options) (c *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the stand-in cluster needs root (network namespaces, nftables)")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.LogDir == "" {
		if opts.LogDir, err = os.MkdirTemp("", "portico-cluster-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, err
	}
	// Forwarders refuse to start without a heartbeat key.
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	if err := os.WriteFile(filepath.Join(opts.LogDir, "heartbeat.key"), []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	c = &Cluster{opts: opts, stop: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = c.Close()
			c = nil
		}
	}()
	if c.Env, err = testenv.NewWith(testenv.Options{Controllers: true, Kwok: opts.KwokNodes > 0}); err != nil {
		return c, err
	}
	if c.Lab, err = netlab.New(); err != nil {
		return c, err
	}
	api, err := url.Parse(c.Env.Config.Host)
	if err != nil {
		return c, err
	}
	ctx := context.Background()
	for i := range opts.Nodes {
		h, err := c.Lab.AddHost(fmt.Sprintf("n%d", i+1), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, 0, byte(i + 1)}), 24), netip.Prefix{})
		if err != nil {
			return c, err
		}
		if err := dptest.EnableForwarding(h); err != nil {
			return c, err
		}
		// The apiserver listens on the host's loopback; relay it into the
		// node at the same address so the kubeconfig works unchanged.
		if err := h.ForwardTCP(api.Host, api.Host, c.stop); err != nil {
			return c, err
		}
		n := &Node{Host: h, Name: "node-" + h.Name, Log: filepath.Join(opts.LogDir, "forwarder-"+h.Name+".log")}
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}}}
		obj.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		obj.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.IPv4.Addr().String()}}
		if err := testenv.CreateNodeWithStatus(ctx, c.Env.Client, obj); err != nil {
			return c, err
		}
		// The lab is this node's kubelet: without a heartbeat the node
		// lifecycle controller would mark it Unknown.
		n.heartbeat = testenv.StartHeartbeat(c.Env.Client, n.Name)
		c.Nodes = append(c.Nodes, n)
	}
	for i := range opts.KwokNodes {
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("kwok-%d", i+1),
			Labels:      map[string]string{KwokNodeLabel: "true"},
			Annotations: map[string]string{testenv.KwokNodeAnnotation: testenv.KwokNodeValue}}}
		if err := c.Env.Client.Create(ctx, obj); err != nil {
			return c, err
		}
	}
	if c.Client, err = c.Lab.AddHost("client", netip.MustParsePrefix("10.88.0.100/24"), netip.Prefix{}); err != nil {
		return c, err
	}
	for _, n := range c.Nodes {
		if err := c.StartForwarder(n); err != nil {
			return c, err
		}
	}
	return c, nil
}

// StartForwarder runs the forwarder binary inside the node, its output
// appended to n.Log.
func (c *Cluster) StartForwarder(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return nil
	}
	args := append([]string{"--kubeconfig", c.Env.Kubeconfig, "--node-name", n.Name, "--interface", n.Host.Link, "--zap-log-level", "1",
		"--heartbeat-key-file", filepath.Join(c.opts.LogDir, "heartbeat.key"), "--namespace", "default"}, c.opts.ForwarderArgs...)
	cmd := n.Host.Command(c.opts.ForwarderBin, args...)
	if c.opts.ForwarderCommand != nil {
		cmd = c.opts.ForwarderCommand(n.Host.NS, args)
	}
	p, err := testenv.StartProcess("forwarder "+n.Name, cmd, testenv.ProcessOptions{Log: n.Log, CleanExit: true})
	if err != nil {
		return err
	}
	c.procMu.Lock()
	c.procs = append(c.procs, p)
	c.procMu.Unlock()
	n.proc = p
	return nil
}

// StopForwarder stops the node's forwarder (SIGTERM, then SIGKILL); a
// forwarder that panicked or did not exit cleanly is reported by Err.
func (c *Cluster) StopForwarder(n *Node) {
	n.mu.Lock()
	p := n.proc
	n.proc = nil
	n.mu.Unlock()
	if p != nil {
		_ = p.Stop()
	}
}

// KillForwarder kills the node's forwarder with SIGKILL, as a crash or a
// node's death would end it: no goodbye to its peers or routers.
func (c *Cluster) KillForwarder(n *Node) {
	n.mu.Lock()
	p := n.proc
	n.proc = nil
	n.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// StopHeartbeat stops the node's kubelet-like heartbeat: the node lifecycle
// controller marks it Unknown after testenv.NodeMonitorGracePeriod, as when
// a node dies. StartHeartbeat brings it back.
func (c *Cluster) StopHeartbeat(n *Node) {
	n.mu.Lock()
	h := n.heartbeat
	n.heartbeat = nil
	n.mu.Unlock()
	if h != nil {
		h.Stop()
	}
}

// StartHeartbeat restarts the node's heartbeat.
func (c *Cluster) StartHeartbeat(n *Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.heartbeat == nil {
		n.heartbeat = testenv.StartHeartbeat(c.Env.Client, n.Name)
	}
}

// Err reports every forwarder that panicked (running or stopped) or exited
// without being stopped, and every control plane component that did.
func (c *Cluster) Err() error {
	c.procMu.Lock()
	procs := append([]*testenv.Process(nil), c.procs...)
	c.procMu.Unlock()
	if c.Env != nil {
		procs = append(procs, c.Env.Components()...)
	}
	var errs []error
	for _, p := range procs {
		if err := p.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, p.Tail(30)))
		}
	}
	return errors.Join(errs...)
}

// Operator is the in-process operator.
type Operator struct {
	cancel context.CancelFunc
	done   chan error
}

// StartOperator runs the operator with the local backend against the cluster.
func (c *Cluster) StartOperator() error {
	o := operator.DefaultOptions()
	o.Providers = []string{"local"}
	o.ClusterID = "portico-demo"
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 200 * time.Millisecond
	o.RetryBase, o.RetryMax = 100*time.Millisecond, 2*time.Second
	o.ConfigErrorBackoff = 2 * time.Second
	cfg, err := c.Env.OperatorConfig()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgr, _, err := operator.New(ctx, cfg, o)
	if err != nil {
		cancel()
		return err
	}
	op := &Operator{cancel: cancel, done: make(chan error, 1)}
	c.operator = op
	go func() { op.done <- mgr.Start(ctx) }()
	return nil
}

// StopOperator stops the in-process operator.
func (c *Cluster) StopOperator() error {
	if c.operator == nil {
		return nil
	}
	op := c.operator
	c.operator = nil
	op.cancel()
	select {
	case err := <-op.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("operator did not stop within 30s")
	}
}

// Pod is a pod namespace behind a node, serving TCP and UDP on Port, and
// the Pod object that stands for it.
type Pod struct {
	*dptest.Pod
	Node   *Node
	Name   string
	Port   int
	Object *corev1.Pod
}

// AddPod creates a pod behind node running a server that answers
// "<name> <client address>" on port (TCP and UDP), routes every other node
// to it through node, as a CNI would, and creates its Pod object in
// namespace ns with labels (plus "pod": name), bound to the node, Running
// and Ready at the pod's address. Services select it by label; the
// EndpointSlice controller publishes it.
func (c *Cluster) AddPod(node *Node, ns, name string, port int, labels map[string]string) (*Pod, error) {
	c.nextPod++
	p, err := dptest.AddPod(c.Lab.ID(), node.Host, c.nextPod)
	if err != nil {
		return nil, err
	}
	c.pods = append(c.pods, p)
	for _, other := range c.Nodes {
		if other == node {
			continue
		}
		if _, err := other.Host.IP("route", "replace", netip.PrefixFrom(p.Addr, 24).Masked().String(), "via", node.Host.IPv4.Addr().String()); err != nil {
			return nil, err
		}
	}
	s, err := dptest.Serve(p.Host, name, port)
	if err != nil {
		return nil, err
	}
	c.servers = append(c.servers, s)
	ctx := context.Background()
	if err := c.Env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	l := map[string]string{"pod": name}
	maps.Copy(l, labels)
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec: corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "server", Image: "portico.invalid/dptest-server",
			Ports: []corev1.ContainerPort{{ContainerPort: int32(port), Protocol: corev1.ProtocolTCP}, {ContainerPort: int32(port), Protocol: corev1.ProtocolUDP}}}}},
	}
	if err := testenv.RunPod(ctx, c.Env.Client, obj, p.Addr.String()); err != nil {
		return nil, err
	}
	return &Pod{Pod: p, Node: node, Name: name, Port: port, Object: obj}, nil
}

// SetPodReady makes the pod's Pod object Ready or not, as its readiness
// probe would; the EndpointSlice controller follows.
func (c *Cluster) SetPodReady(p *Pod, ready bool) error {
	return testenv.SetPodReady(context.Background(), c.Env.Client, p.Object, ready)
}

// Close stops everything, removes every namespace, link and nftables table
// it made, and returns Err and the errors of stopping: a forwarder or a
// control plane component that panicked or exited on its own.
func (c *Cluster) Close() error {
	errs := []error{c.StopOperator()}
	for _, n := range c.Nodes {
		c.StopHeartbeat(n)
		c.StopForwarder(n)
		// The forwarder's table lives in the node's namespace, which goes
		// with it; --cleanup is exercised by the tests.
	}
	for _, s := range c.servers {
		s.Close()
	}
	for _, p := range c.pods {
		p.Remove()
	}
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	if c.Lab != nil {
		c.Lab.Close()
	}
	errs = append(errs, c.Err())
	if c.Env != nil {
		// Env.Stop reports kube-controller-manager and kwok, already in Err.
		_ = c.Env.Stop()
	}
	return errors.Join(errs...)
}
