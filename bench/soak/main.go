// Command soak runs Portico for a while under churn and fails on the first
// sign of rot (make soak; SOAK_MINUTES sets the duration, 2 in CI).
//
// On the one-machine stand-in cluster (e2e/cluster: real kube-apiserver,
// etcd and kube-controller-manager, kwok, three node namespaces running the
// real portico-forwarder, a client namespace) it runs the portico-operator
// binary with the local and memory backends and, for the duration:
//   - creates, updates (ports added, removed and renumbered) and deletes
//     Services of both classes;
//   - scales a Deployment up and down and rolls it. The real deployment and
//     replicaset controllers run its pods; as there is no scheduler, the pod
//     template names a kwok node and each rollout moves it to the next one,
//     where kwok runs the pods to Ready;
//   - stops the heartbeat of a lab node and then of a kwok node, for longer
//     than the node lifecycle controller's grace period, and brings it back.
//
// It fails on a panic or an exit of any Portico process, a Service change
// not converged within --converge (Ready for the current generation with an
// address, and for the local class announced by a node), an address held by
// two Services or announced by two nodes (LoadBalancer records, and ARP
// two MACs answering one ARP request from arping from the client namespace), operator
// RSS growth beyond --rss-growth-mb, and, once every Service is deleted at
// the end, any leftover: a LoadBalancer record, an assigned pool address, or
// a Service's rule or address in a node's nftables table.
//
// The last line is:
//
//	soak: minutes=<n> services=<n> restarts=<n> leaks=<n> max_converge_ms=<n> operator_rss_mb=<n>
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/internal/testenv"
)

const (
	namespace   = "portico-soak"
	localClass  = "lb.portico.dev/local"
	memoryClass = "lb.portico.dev/memory"
	poolRange   = "10.88.0.200-10.88.0.239"
	// maxLocal and maxMemory cap the live Services of each class.
	maxLocal, maxMemory = 10, 20
	// downFor is how long a flapped node stays silent: past the node
	// lifecycle controller's grace period, so it is marked Unknown.
	downFor = testenv.NodeMonitorGracePeriod + 10*time.Second
)

type config struct {
	minutes      float64
	operatorBin  string
	forwarderBin string
	kwokNodes    int
	converge     time.Duration
	rssGrowthMB  int
	seed         uint64
	logDir       string
}

func main() {
	var cfg config
	flag.Float64Var(&cfg.minutes, "minutes", 2, "How long the churn runs.")
	flag.StringVar(&cfg.operatorBin, "operator", "bin/portico-operator", "Path of the portico-operator binary.")
	flag.StringVar(&cfg.forwarderBin, "forwarder", "bin/portico-forwarder", "Path of the portico-forwarder binary.")
	flag.IntVar(&cfg.kwokNodes, "kwok-nodes", 3, "kwok nodes beside the three lab nodes.")
	flag.DurationVar(&cfg.converge, "converge", 45*time.Second, "Bound on a Service change converging (and on a deleted Service being gone).")
	flag.IntVar(&cfg.rssGrowthMB, "rss-growth-mb", 100, "Bound on the operator's RSS growth from the first sample to the end.")
	flag.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "Seed of the churn's random choices.")
	flag.StringVar(&cfg.logDir, "log-dir", "", "Directory for the operator's and forwarders' logs (default: a temporary directory, kept on failure).")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// svcState is what the soak expects of one Service.
type svcState struct {
	name    string
	local   bool
	since   time.Time // the last change the operator has not yet caught up with; zero when converged
	deleted bool
}

type soak struct {
	cfg config
	c   *cluster.Cluster
	cl  client.Client
	op  *testenv.Process
	rng *rand.Rand

	svcs      map[string]*svcState
	created   int
	nextID    int
	addresses map[string]bool // every address a soak Service held

	maxConverge time.Duration
	rssFirst    int
	rssMax      int
	rssLast     int
	failures    []string
	leaks       int
	restarts    int

	replicas int
	rollout  int
	lastARP  time.Time
	// arpAnswered counts ARP probes of a local address that got a reply and
	// maxReadyPods the most Ready pods of the Deployment seen: both must be
	// positive, or the ARP check and the workload churn proved nothing.
	arpAnswered  int
	maxReadyPods int32
}

func (s *soak) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "FAIL:", msg)
	s.failures = append(s.failures, msg)
}

func run(cfg config) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, nftables)")
	}
	for _, tool := range []string{"ip", "nft", "arping"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s: %w", tool, err)
		}
	}
	keepLogs := cfg.logDir != ""
	if cfg.logDir == "" {
		if cfg.logDir, err = os.MkdirTemp("", "portico-soak-"); err != nil {
			return err
		}
	}
	c, err := cluster.Start(cluster.Options{ForwarderBin: cfg.forwarderBin, LogDir: cfg.logDir, KwokNodes: cfg.kwokNodes})
	if err != nil {
		return fmt.Errorf("starting the stand-in cluster: %w", err)
	}
	s := &soak{cfg: cfg, c: c, cl: c.Env.Client, rng: rand.New(rand.NewPCG(cfg.seed, 18)),
		svcs: map[string]*svcState{}, addresses: map[string]bool{}, replicas: 3}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			s.restarts++
			err = errors.Join(err, fmt.Errorf("stopping the cluster: %w", cerr))
		}
		if err == nil && !keepLogs {
			_ = os.RemoveAll(cfg.logDir)
		} else {
			fmt.Fprintln(os.Stderr, "logs in", cfg.logDir)
		}
	}()
	fmt.Printf("soak: seed=%d logs=%s\n", cfg.seed, cfg.logDir)
	if err := s.setup(); err != nil {
		return err
	}
	defer func() {
		if perr := s.op.Stop(); perr != nil {
			s.restarts++
			err = errors.Join(err, fmt.Errorf("%w\n%s", perr, s.op.Tail(30)))
		}
	}()
	s.churn()
	s.drain()
	s.checkProcesses()
	fmt.Printf("soak: minutes=%s services=%d restarts=%d leaks=%d max_converge_ms=%d operator_rss_mb=%d\n",
		strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", cfg.minutes), "0"), "."), s.created, s.restarts, s.leaks, s.maxConverge.Milliseconds(), s.rssMax)
	if len(s.failures) > 0 {
		return fmt.Errorf("%d failures, first: %s", len(s.failures), s.failures[0])
	}
	return nil
}

func (s *soak) setup() error {
	ctx := context.Background()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "soak"}, Spec: lbv1.IPPoolSpec{Addresses: []string{poolRange}}},
		s.deployment(),
	} {
		if err := s.cl.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	op, err := testenv.StartProcess("portico-operator", exec.Command(s.cfg.operatorBin,
		"--kubeconfig", s.c.Env.Kubeconfig, "--providers", "local,memory", "--memory-ipv4-range", "10.129.0.0/16",
		"--cluster-id", "portico-soak", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--node-batch-window", "200ms", "--retry-base-delay", "100ms", "--retry-max-delay", "2s", "--config-error-backoff", "2s"),
		testenv.ProcessOptions{Log: s.cfg.logDir + "/operator.log", CleanExit: true})
	if err != nil {
		return err
	}
	s.op = op
	return nil
}

// deployment is the workload every Service selects.
func (s *soak) deployment() *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(s.replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{NodeName: s.kwokNode(0), Containers: []corev1.Container{{Name: "web", Image: "portico.invalid/web",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
			},
		},
	}
}

func (s *soak) kwokNode(i int) string { return fmt.Sprintf("kwok-%d", i%s.cfg.kwokNodes+1) }

// churn changes the cluster every second until the duration ends, checking
// after every change.
func (s *soak) churn() {
	ctx := context.Background()
	start := time.Now()
	end := start.Add(time.Duration(s.cfg.minutes * float64(time.Minute)))
	type flap struct {
		at       time.Time
		up       func()
		describe string
	}
	var downNode *flap
	nextFlap := start.Add(15 * time.Second)
	flaps := 0
	for i := 0; time.Now().Before(end); i++ {
		switch {
		case downNode != nil && time.Now().After(downNode.at):
			fmt.Println("up:", downNode.describe)
			downNode.up()
			downNode = nil
			nextFlap = time.Now().Add(10 * time.Second)
		case downNode == nil && time.Now().After(nextFlap) && time.Now().Add(downFor).Before(end):
			flaps++
			if flaps%2 == 1 {
				n := s.c.Nodes[(flaps/2)%len(s.c.Nodes)]
				fmt.Println("down: lab node", n.Name)
				s.c.StopHeartbeat(n)
				downNode = &flap{at: time.Now().Add(downFor), up: func() { s.c.StartHeartbeat(n) }, describe: "lab node " + n.Name}
			} else {
				name := s.kwokNode(flaps / 2)
				fmt.Println("down: kwok node", name)
				if err := testenv.StopKwokNode(ctx, s.cl, name); err != nil {
					s.fail("stopping kwok node %s: %v", name, err)
					break
				}
				downNode = &flap{at: time.Now().Add(downFor), describe: "kwok node " + name, up: func() {
					if err := testenv.StartKwokNode(ctx, s.cl, name); err != nil {
						s.fail("starting kwok node %s: %v", name, err)
					}
				}}
			}
		default:
			s.act(ctx)
		}
		time.Sleep(time.Second)
		s.check(ctx)
		if len(s.failures) > 0 {
			return
		}
	}
	if downNode != nil {
		fmt.Println("up:", downNode.describe)
		downNode.up()
	}
}

// act makes one random change.
func (s *soak) act(ctx context.Context) {
	live := s.live()
	switch r := s.rng.IntN(10); {
	case r < 4 || len(live) < 4:
		s.createService(ctx)
	case r < 6:
		s.updateService(ctx, live[s.rng.IntN(len(live))])
	case r < 8:
		s.deleteService(ctx, live[s.rng.IntN(len(live))])
	case r < 9:
		s.replicas = s.rng.IntN(6)
		fmt.Println("scale: web to", s.replicas)
		s.updateDeployment(ctx, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To(int32(s.replicas)) })
	default:
		s.rollout++
		node := s.kwokNode(s.rollout)
		fmt.Println("roll: web to", node)
		s.updateDeployment(ctx, func(d *appsv1.Deployment) { d.Spec.Template.Spec.NodeName = node })
	}
}

func (s *soak) live() []*svcState {
	var out []*svcState
	for _, st := range s.svcs {
		if !st.deleted {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (s *soak) count(local bool) int {
	n := 0
	for _, st := range s.live() {
		if st.local == local {
			n++
		}
	}
	return n
}

func (s *soak) createService(ctx context.Context) {
	local := s.rng.IntN(5) < 2
	if local && s.count(true) >= maxLocal {
		local = false
	}
	if !local && s.count(false) >= maxMemory {
		return
	}
	class, prefix := memoryClass, "mem"
	if local {
		class, prefix = localClass, "local"
	}
	s.nextID++
	name := fmt.Sprintf("%s-%d", prefix, s.nextID)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To(class),
			Selector:          map[string]string{"app": "web"},
			Ports:             []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if err := s.cl.Create(ctx, svc); err != nil {
		s.fail("creating Service %s: %v", name, err)
		return
	}
	s.created++
	s.svcs[name] = &svcState{name: name, local: local, since: time.Now()}
	fmt.Println("create:", name)
}

// updateService adds or removes a second port, or renumbers the first.
func (s *soak) updateService(ctx context.Context, st *svcState) {
	var what string
	err := s.update(ctx, st.name, func(svc *corev1.Service) {
		switch {
		case len(svc.Spec.Ports) == 1 && s.rng.IntN(2) == 0:
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromInt32(8443)})
			what = "port 443 added"
		case len(svc.Spec.Ports) == 2:
			svc.Spec.Ports = svc.Spec.Ports[:1]
			what = "port 443 removed"
		default:
			svc.Spec.Ports[0].Port = 80 + 8000 - svc.Spec.Ports[0].Port // 80 <-> 8000
			what = fmt.Sprintf("port renumbered to %d", svc.Spec.Ports[0].Port)
		}
	})
	if err != nil {
		s.fail("updating Service %s: %v", st.name, err)
		return
	}
	if st.since.IsZero() {
		st.since = time.Now()
	}
	fmt.Println("update:", st.name, what)
}

func (s *soak) update(ctx context.Context, name string, mutate func(*corev1.Service)) error {
	var err error
	for range 10 {
		cur := &corev1.Service{}
		if err = s.cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cur); err != nil {
			return err
		}
		mutate(cur)
		if err = s.cl.Update(ctx, cur); !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

func (s *soak) deleteService(ctx context.Context, st *svcState) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: st.name}}
	if err := s.cl.Delete(ctx, svc); err != nil {
		s.fail("deleting Service %s: %v", st.name, err)
		return
	}
	st.deleted, st.since = true, time.Now()
	fmt.Println("delete:", st.name)
}

func (s *soak) updateDeployment(ctx context.Context, mutate func(*appsv1.Deployment)) {
	for range 10 {
		d := &appsv1.Deployment{}
		if err := s.cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "web"}, d); err != nil {
			s.fail("getting Deployment: %v", err)
			return
		}
		mutate(d)
		err := s.cl.Update(ctx, d)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			s.fail("updating Deployment: %v", err)
			return
		}
	}
}

// check reads every soak Service and LoadBalancer record and checks the
// invariants; it records convergence times.
func (s *soak) check(ctx context.Context) {
	s.checkProcesses()
	if rss, err := rssMB(s.op.Pid()); err == nil {
		if s.rssFirst == 0 {
			s.rssFirst = rss
		}
		s.rssMax = max(s.rssMax, rss)
		s.rssLast = rss
		if rss-s.rssFirst > s.cfg.rssGrowthMB {
			s.fail("operator RSS grew from %d MB to %d MB (bound +%d MB)", s.rssFirst, rss, s.cfg.rssGrowthMB)
		}
	}
	var svcs corev1.ServiceList
	var recs lbv1.LoadBalancerList
	if err := s.cl.List(ctx, &svcs, client.InNamespace(namespace)); err != nil {
		s.fail("listing Services: %v", err)
		return
	}
	if err := s.cl.List(ctx, &recs, client.InNamespace(namespace)); err != nil {
		s.fail("listing LoadBalancers: %v", err)
		return
	}
	for _, m := range sharedAddresses(svcs.Items) {
		s.fail("address shared: %s", m)
	}
	for _, m := range doubleAnnouncements(recs.Items) {
		s.fail("double announcement in LoadBalancer status: %s", m)
	}
	byName := map[string]*corev1.Service{}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		byName[svc.Name] = svc
		for _, in := range svc.Status.LoadBalancer.Ingress {
			s.addresses[in.IP] = true
		}
	}
	recByName := map[string]*lbv1.LoadBalancer{}
	for i := range recs.Items {
		recByName[recs.Items[i].Name] = &recs.Items[i]
	}
	now := time.Now()
	for name, st := range s.svcs {
		svc := byName[name]
		if st.since.IsZero() {
			continue
		}
		var why error
		switch {
		case st.deleted && svc == nil:
			delete(s.svcs, name)
		case st.deleted:
			why = fmt.Errorf("still exists (finalizers %v)", svc.Finalizers)
		case svc == nil:
			why = errors.New("disappeared")
		default:
			why = converged(svc, recByName[name], st.local)
		}
		if why == nil {
			s.maxConverge = max(s.maxConverge, now.Sub(st.since))
			st.since = time.Time{}
			continue
		}
		if now.Sub(st.since) > s.cfg.converge {
			s.fail("Service %s not converged %s after its last change: %v", name, s.cfg.converge, why)
			st.since = time.Time{} // report once
		}
	}
	d := &appsv1.Deployment{}
	if err := s.cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "web"}, d); err == nil {
		s.maxReadyPods = max(s.maxReadyPods, d.Status.ReadyReplicas)
	}
	if now.Sub(s.lastARP) > 10*time.Second {
		s.lastARP = now
		s.checkARP(svcs.Items)
	}
}

// checkARP asks, from the client namespace, who has each local address; two
// MACs answering one address is a double announcement.
func (s *soak) checkARP(svcs []corev1.Service) {
	type result struct {
		ip     string
		macs   []string
		double []string
	}
	var ips []string
	for _, svc := range svcs {
		if ptr.Deref(svc.Spec.LoadBalancerClass, "") != localClass {
			continue
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP)
		}
	}
	ch := make(chan result, len(ips))
	for _, ip := range ips {
		go func() {
			out, _ := s.c.Client.Command("arping", "-c", "3", "-W", "0.2", "-i", s.c.Client.Link, ip).CombinedOutput()
			answered, double := arpReplyMACs(string(out))
			ch <- result{ip, answered, double}
		}()
	}
	for range ips {
		r := <-ch
		if len(r.macs) > 0 {
			s.arpAnswered++
		}
		if len(r.double) > 1 {
			s.fail("ARP: one request for %s answered by %d MACs %v", r.ip, len(r.double), s.macOwners(r.double))
		}
	}
}

// macOwners names the lab host of each MAC, for the failure message.
func (s *soak) macOwners(macs []string) []string {
	out := make([]string, 0, len(macs))
	for _, m := range macs {
		owner := "unknown host"
		for _, n := range s.c.Nodes {
			if strings.EqualFold(n.Host.MAC.String(), m) {
				owner = n.Name
			}
		}
		out = append(out, m+" ("+owner+")")
	}
	return out
}

// checkProcesses fails on a panic or an exit of the operator or a
// forwarder (and of kube-controller-manager or kwok, which would void the
// run).
func (s *soak) checkProcesses() {
	if s.restarts > 0 {
		return
	}
	for _, err := range []error{s.op.Err(), s.c.Err()} {
		if err != nil {
			s.restarts++
			s.fail("process: %v", err)
		}
	}
}

// drain deletes every Service and checks that nothing is left behind.
func (s *soak) drain() {
	ctx := context.Background()
	if len(s.failures) > 0 {
		return
	}
	// Let outstanding changes converge first, so the leak check sees a
	// settled cluster.
	deadline := time.Now().Add(s.cfg.converge)
	for time.Now().Before(deadline) && len(s.failures) == 0 && s.pending() > 0 {
		time.Sleep(500 * time.Millisecond)
		s.check(ctx)
	}
	for _, st := range s.live() {
		s.deleteService(ctx, st)
	}
	deadline = time.Now().Add(s.cfg.converge + 5*time.Second)
	for time.Now().Before(deadline) && len(s.failures) == 0 && len(s.svcs) > 0 {
		time.Sleep(500 * time.Millisecond)
		s.check(ctx)
	}
	if len(s.failures) > 0 {
		return
	}
	addresses := make([]string, 0, len(s.addresses))
	for a := range s.addresses {
		addresses = append(addresses, a)
	}
	slices.Sort(addresses)
	// The pool's status and the forwarders' tables follow the deletions
	// asynchronously; give them a bounded moment.
	var leaks []string
	deadline = time.Now().Add(30 * time.Second)
	for {
		leaks = s.leftovers(ctx, addresses)
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	s.leaks = len(leaks)
	for _, l := range leaks {
		s.fail("leak: %s", l)
	}
	fmt.Printf("soak: arp_answered=%d max_ready_pods=%d\n", s.arpAnswered, s.maxReadyPods)
	if s.arpAnswered == 0 {
		s.fail("no ARP probe of a local address was answered: the double-announcement check saw nothing")
	}
	if s.maxReadyPods == 0 {
		s.fail("the Deployment never had a Ready pod: the workload churn did not run")
	}
	if err := s.nodesReady(ctx); err != nil {
		s.fail("after the flaps: %v", err)
	}
	if s.rssLast-s.rssFirst > s.cfg.rssGrowthMB {
		s.fail("operator RSS grew from %d MB to %d MB (bound +%d MB)", s.rssFirst, s.rssLast, s.cfg.rssGrowthMB)
	}
}

// nodesReady waits for every Node to be Ready again after the flaps.
func (s *soak) nodesReady(ctx context.Context) error {
	var notReady []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		var nodes corev1.NodeList
		if err := s.cl.List(ctx, &nodes); err != nil {
			return err
		}
		notReady = nil
		for _, n := range nodes.Items {
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready {
				notReady = append(notReady, n.Name)
			}
		}
		if len(notReady) == 0 {
			return nil
		}
	}
	return fmt.Errorf("nodes not Ready: %v", notReady)
}

func (s *soak) pending() int {
	n := 0
	for _, st := range s.svcs {
		if !st.since.IsZero() {
			n++
		}
	}
	return n
}

// leftovers lists what the deleted Services left behind.
func (s *soak) leftovers(ctx context.Context, addresses []string) []string {
	var out []string
	var recs lbv1.LoadBalancerList
	if err := s.cl.List(ctx, &recs); err != nil {
		return []string{fmt.Sprintf("listing LoadBalancers: %v", err)}
	}
	for _, r := range recs.Items {
		out = append(out, "LoadBalancer record "+r.Namespace+"/"+r.Name)
	}
	pool := &lbv1.IPPool{}
	if err := s.cl.Get(ctx, client.ObjectKey{Name: "soak"}, pool); err != nil {
		out = append(out, fmt.Sprintf("reading IPPool: %v", err))
	} else if pool.Status.Assigned != 0 {
		out = append(out, fmt.Sprintf("IPPool soak: assigned=%d", pool.Status.Assigned))
	}
	for _, n := range s.c.Nodes {
		table, err := n.Host.Command("nft", "list", "table", "inet", "portico").CombinedOutput()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: nft list table inet portico: %v: %s", n.Name, err, table))
			continue
		}
		for _, l := range nftLeaks(string(table), namespace, addresses) {
			out = append(out, fmt.Sprintf("%s nftables: %s", n.Name, l))
		}
	}
	return out
}
