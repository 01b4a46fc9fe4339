package testenv

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Options choose what runs beside the apiserver and etcd.
type Options struct {
	// Controllers runs kube-controller-manager with the controllers a
	// cluster's behaviour around Portico depends on: EndpointSlices from
	// Pods (endpointslice), deletion of objects whose owner is gone
	// (garbage collector), nodes whose heartbeats stop marked Unknown and
	// tainted (node lifecycle, after NodeMonitorGracePeriod), and namespace
	// deletion, and Deployments rolled out through ReplicaSets (deployment
	// and replicaset controllers; there is no scheduler, so a Deployment's
	// pod template names its node). Every Node must then have a heartbeat: a
	// kwok node, or StartHeartbeat for a node the test or the lab plays
	// itself.
	Controllers bool
	// Kwok runs kwok as the kubelet of every Node annotated
	// KwokNodeAnnotation=KwokNodeValue: it keeps their status and Lease fresh
	// and runs their Pods to Running and Ready. Nodes without the
	// annotation (the netns lab's) are left alone.
	Kwok bool
	// KwokLeaseDuration is the node Lease duration of kwok's nodes (default
	// LeaseDuration); kwok renews every quarter of it. Thousands of kwok
	// nodes need a longer one (kubelet's default is 40s) to keep the Lease
	// renewals from starving two cores; the node lifecycle controller
	// (Controllers) would then mark them Unknown, so do not combine the two.
	KwokLeaseDuration time.Duration
	// NodePortRange is the apiserver's service-node-port-range (default
	// 30000-32767, 2,768 ports). More LoadBalancer Services with node ports
	// need a wider one.
	NodePortRange string
}

// NodeMonitorGracePeriod is how long the node lifecycle controller waits
// for a heartbeat before it marks a node's Ready condition Unknown.
const NodeMonitorGracePeriod = 10 * time.Second

// LeaseDuration is the node Lease duration of kwok's nodes and of
// StartHeartbeat; both renew every quarter of it.
const LeaseDuration = 8 * time.Second

// KwokNodeAnnotation and KwokNodeValue mark the Nodes kwok manages.
const (
	KwokNodeAnnotation = "kwok.x-k8s.io/node"
	KwokNodeValue      = "fake"
)

// controllers are the kube-controller-manager controllers Options.Controllers
// runs. Not the taint-eviction controller: the lab's pods are real processes
// that must not be deleted behind the test's back when a node stops its
// heartbeat. The deployment and replicaset controllers cost two idle
// informers until a test creates a Deployment (the soak rolls one).
var controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"endpointslice-controller",
	"garbage-collector-controller",
	"node-lifecycle-controller",
	"namespace-controller",
}

//go:embed kwok-stages.yaml
var kwokStages []byte

// startComponents starts what opts asks for, after the apiserver.
func (e *Env) startComponents(opts Options) error {
	if !opts.Controllers && !opts.Kwok {
		return nil
	}
	dir := filepath.Dir(e.Kubeconfig)
	if opts.Controllers {
		cmd := exec.Command(filepath.Join(e.BinDir, "kube-controller-manager"),
			"--kubeconfig", e.Kubeconfig,
			"--controllers", strings.Join(controllers, ","),
			"--leader-elect=false",
			"--use-service-account-credentials=false",
			"--secure-port=0",
			"--node-monitor-period=1s",
			"--node-monitor-grace-period", NodeMonitorGracePeriod.String(),
			"--node-startup-grace-period", NodeMonitorGracePeriod.String(),
			// Resync quickly so a test sees the garbage collector and the
			// namespace controller act within seconds.
			"--concurrent-gc-syncs=5",
			"-v=1")
		p, err := StartProcess("kube-controller-manager", cmd, ProcessOptions{Log: filepath.Join(dir, "kube-controller-manager.log")})
		if err != nil {
			return err
		}
		e.procs = append(e.procs, p)
	}
	if opts.Kwok {
		stages := filepath.Join(dir, "kwok-stages.yaml")
		if err := os.WriteFile(stages, kwokStages, 0o600); err != nil {
			return err
		}
		lease := opts.KwokLeaseDuration
		if lease == 0 {
			lease = LeaseDuration
		}
		cmd := exec.Command(filepath.Join(e.BinDir, "kwok"),
			"--kubeconfig", e.Kubeconfig,
			"--config", stages,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector", KwokNodeAnnotation+"="+KwokNodeValue,
			// kwok renews a Lease every quarter of its duration: by
			// default every 2s, well inside NodeMonitorGracePeriod.
			"--node-lease-duration-seconds", fmt.Sprint(int(lease/time.Second)))
		cmd.Env = append(os.Environ(), "HOME="+dir) // kwok keeps a work directory under $HOME/.kwok
		p, err := StartProcess("kwok", cmd, ProcessOptions{Log: filepath.Join(dir, "kwok.log")})
		if err != nil {
			return err
		}
		e.procs = append(e.procs, p)
	}
	// A flag a new version refuses or a missing binary shows at once: fail
	// here with the component's log rather than later as missing behaviour.
	time.Sleep(500 * time.Millisecond)
	return e.ComponentsErr()
}

// ComponentsErr reports kube-controller-manager or kwok having panicked or
// exited; nil while they run.
func (e *Env) ComponentsErr() error {
	var errs []error
	for _, p := range e.procs {
		if err := p.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, p.Tail(30)))
		}
	}
	return errors.Join(errs...)
}

// Components returns the processes started beside the apiserver
// (kube-controller-manager, kwok).
func (e *Env) Components() []*Process { return e.procs }

// stopComponents stops kube-controller-manager and kwok and reports any of
// them that panicked or exited on its own.
func (e *Env) stopComponents() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, e.procs[i].Tail(30)))
		}
	}
	return errors.Join(errs...)
}
