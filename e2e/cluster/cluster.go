// Package cluster assembles Portico's one-machine stand-in for a cluster: a
// real kube-apiserver and etcd (internal/testenv), node network namespaces
// on one Linux bridge (e2e/netlab) each with a Node object and the real
// portico-forwarder binary, pods behind nodes (dataplane/dptest) published
// through EndpointSlices, a client namespace, and the operator with the
// local backend. The data-plane e2e tests and "make demo" use it.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

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
	// LogDir receives one log file per forwarder (default a temp dir).
	LogDir string
}

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
}

// Node is one node namespace with its forwarder.
type Node struct {
	Host *netlab.Host
	// Name is the Node object's name.
	Name string
	Log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
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
			c.Close()
			c = nil
		}
	}()
	if c.Env, err = testenv.New(); err != nil {
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
		if err := c.Env.Client.Create(ctx, obj); err != nil {
			return c, err
		}
		obj.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		obj.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: h.IPv4.Addr().String()}}
		if err := c.Env.Client.Status().Update(ctx, obj); err != nil {
			return c, err
		}
		c.Nodes = append(c.Nodes, n)
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

// StartForwarder runs the forwarder binary inside the node.
func (c *Cluster) StartForwarder(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	f, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"--kubeconfig", c.Env.Kubeconfig, "--node-name", n.Name, "--interface", n.Host.Link, "--zap-log-level", "1",
		"--heartbeat-key-file", filepath.Join(c.opts.LogDir, "heartbeat.key"), "--namespace", "default"}, c.opts.ForwarderArgs...)
	cmd := n.Host.Command(c.opts.ForwarderBin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

// StopForwarder stops the node's forwarder (SIGTERM, then SIGKILL).
func (c *Cluster) StopForwarder(n *Node) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
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

// Pod is a pod namespace behind a node, serving TCP and UDP on Port.
type Pod struct {
	*dptest.Pod
	Node *Node
	Name string
	Port int
}

// AddPod creates a pod behind node running a server that answers
// "<name> <client address>" on port (TCP and UDP), and routes every other
// node to it through node, as a CNI would.
func (c *Cluster) AddPod(node *Node, name string, port int) (*Pod, error) {
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
	return &Pod{Pod: p, Node: node, Name: name, Port: port}, nil
}

// EndpointSlice publishes pods as the endpoints of service on port portName.
func EndpointSlice(ns, service, portName string, port int32, proto corev1.Protocol, pods []*Pod, ready map[*Pod]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: service + "-" + strings.ToLower(string(proto)), Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(port), Protocol: ptr.To(proto)}},
	}
	for _, p := range pods {
		r := ready == nil || ready[p]
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.Addr.String()},
			NodeName:   ptr.To(p.Node.Name),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r), Serving: ptr.To(r), Terminating: ptr.To(false)},
		})
	}
	return s
}

// Close stops everything and removes every namespace, link and nftables
// table it made.
func (c *Cluster) Close() {
	_ = c.StopOperator()
	for _, n := range c.Nodes {
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
	if c.Env != nil {
		_ = c.Env.Stop()
	}
}
