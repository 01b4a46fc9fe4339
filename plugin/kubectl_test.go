package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/scheme"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/plugin"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// TestRealKubectl runs the real kubectl, which finds kubectl-lb on PATH,
// against a real control plane with portico-operator running in-process
// (memory backend, prices from a ConfigMap), then stops the operator, then
// removes the CRDs, and checks output and exit codes at each stage.
func TestRealKubectl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	log.SetLogger(logr.Discard())
	env := testenv.Start(t)
	ctx := context.Background()
	k := &kubectl{t: t, env: env, path: buildPlugin(t)}

	mustCreate(t, env.Client,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})

	// Before the operator: nothing to show, and a user without RBAC is told so.
	r := k.run("lb", "status", "-n", "shop")
	if r.code != 0 || !strings.Contains(r.stderr, "No load balancers found in shop namespace.") {
		t.Fatalf("empty cluster: exit %d, stderr %q", r.code, r.stderr)
	}
	r = k.run("lb", "status", "-n", "shop", "--as", "nobody")
	if r.code != plugin.ExitForbidden || !strings.Contains(r.stderr, "permission denied: you may not list loadbalancers.lb.portico.dev in namespace shop") {
		t.Errorf("user without RBAC: exit %d, stderr %q", r.code, r.stderr)
	}

	// The operator prices memory load balancers from a ConfigMap.
	prices := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "portico-system", Name: "portico-prices"},
		Data: map[string]string{pricing.ConfigMapKey: `
asOf: "2026-11-01"
currency: USD
products:
- kind: memory
  prices:
  - regions: ["*"]
    hourly: "0.005"
    hourlyItem: lb-hour
    units:
      listeners: {item: listener, hourly: "0.01"}
      targets: {item: target, hourly: "0"}
`}}
	mustCreate(t, env.Client, prices)
	stopOperator := startOperator(t, env, catalogFrom(t, env.Client, prices))

	mustCreate(t, env.Client,
		lbService("shop", "web", 80, 443),
		lbService("shop", "api", 8080),
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "office"}, Spec: v1alpha1.IPPoolSpec{Addresses: []string{"192.0.2.0/28"}}})
	waitFor(t, 60*time.Second, func() error {
		for _, name := range []string{"web", "api"} {
			lb := &v1alpha1.LoadBalancer{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name}, lb); err != nil {
				return err
			}
			if lb.Status.Cost == nil || lb.Status.Address == "" {
				return errors.New(name + " has no address or cost yet")
			}
		}
		return nil
	})

	// status -o json reads back as the objects, priced from the ConfigMap:
	// web has two listeners (0.005 + 2 x 0.01 = 0.025/h = 18.25/month).
	r = k.run("lb", "status", "-n", "shop", "-o", "json")
	var lbs v1alpha1.LoadBalancerList
	if err := json.Unmarshal([]byte(r.stdout), &lbs); err != nil || r.code != 0 {
		t.Fatalf("status -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(lbs.Items) != 2 || lbs.Items[1].Name != "web" {
		t.Fatalf("status -o json items: %+v", lbs.Items)
	}
	web := lbs.Items[1]
	if c := web.Status.Cost; c.Hourly != "0.025" || c.Monthly != "18.25" || c.Source != "configmap:portico-system/portico-prices" {
		t.Errorf("web cost %+v", c)
	}

	// The table has kubectl's shape and the same numbers.
	r = k.run("lb", "status", "-n", "shop")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "MONTHLY COST") {
		t.Fatalf("status table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if f := strings.Fields(lines[2]); f[0] != "web" || f[1] != "lb.portico.dev/memory" || f[2] != web.Status.Address || f[3] != "80/TCP,443/TCP" || f[4] != "True" || f[6] != "0/0" || f[7] != "18.25" {
		t.Errorf("status row for web (no pod matches its selector: ENDPOINTS 0/0): %q", lines[2])
	}

	r = k.run("lb", "cost", "-n", "shop", "-o", "json")
	var report plugin.CostReport
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || r.code != 0 {
		t.Fatalf("cost -o json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	// api: 0.005 + 0.01 = 0.015/h = 10.95/month.
	if len(report.Totals) != 1 || report.Totals[0].Monthly != "29.2" || report.Totals[0].LoadBalancers != 2 {
		t.Errorf("cost totals %+v", report.Totals)
	}

	r = k.run("lb", "describe", "web", "-n", "shop")
	for _, s := range []string{"Class:       lb.portico.dev/memory", "Provider Resources:", "listener", "lb-hour", "Events:", "Ensured", "lb.portico.dev/Priced",
		"Serving:     False (NoEndpoints) no ready endpoint: no pod matches the selector app=web in namespace shop", "Endpoints:   0 ready of 0"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("describe lacks %q:\n%s", s, r.stdout)
		}
	}

	troublesThroughKubectl(t, k, env)

	r = k.run("lb", "pools")
	if r.code != 0 || !strings.Contains(r.stdout, "office") || !strings.Contains(r.stdout, "192.0.2.0/28") {
		t.Errorf("pools: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = k.run("lb", "--version"); r.code != 0 || !strings.HasPrefix(r.stdout, "kubectl-lb ") {
		t.Errorf("--version: exit %d %q", r.code, r.stdout)
	}

	// Stopping the operator releases its Lease: the plugin says so.
	stopOperator()
	r = k.run("lb", "status", "-n", "shop")
	if r.code != plugin.ExitOperatorDown || !strings.Contains(r.stderr, "portico-operator is not running") {
		t.Errorf("operator stopped: exit %d, stderr %q", r.code, r.stderr)
	}

	// Without the CRDs the plugin says what is missing.
	s := scheme.New()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	crds, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"loadbalancers.lb.portico.dev", "ippools.lb.portico.dev", "bgppeers.lb.portico.dev", "bgpadvertisements.lb.portico.dev"} {
		crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := crds.Delete(ctx, crd); err != nil {
			t.Fatal(err)
		}
	}
	dc := discovery.NewDiscoveryClientForConfigOrDie(env.Config)
	waitFor(t, 30*time.Second, func() error {
		if _, err := dc.ServerResourcesForGroupVersion(v1alpha1.GroupVersion.String()); !apierrors.IsNotFound(err) {
			return errors.New("lb.portico.dev still served")
		}
		return nil
	})
	r = k.run("lb", "status")
	if r.code != plugin.ExitNoCRDs || !strings.Contains(r.stderr, "Portico's CRDs are not installed") {
		t.Errorf("no CRDs: exit %d, stderr %q", r.code, r.stderr)
	}
}

type kubectl struct {
	t    *testing.T
	env  *testenv.Env
	path string // directory holding kubectl-lb, prepended to PATH
}

func (k *kubectl) run(args ...string) result {
	k.t.Helper()
	// Not env.Kubectl: kubectl refuses flags (its --kubeconfig) before a
	// plugin's name, so the kubeconfig goes in through $KUBECONFIG.
	cmd := exec.Command(filepath.Join(k.env.BinDir, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.env.Kubeconfig,
		"PATH="+k.path+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+k.t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		k.t.Fatalf("running kubectl %v: %v", args, err)
	}
	// A non-zero exit may be what the test wants; a panic never is.
	if line := testenv.Crashed(append(stdout.Bytes(), stderr.Bytes()...)); line != "" {
		k.t.Errorf("kubectl %v: the plugin panicked: %q\n%s", args, line, stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// buildPlugin builds cmd/kubectl-lb into a fresh directory and returns it.
func buildPlugin(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "kubectl-lb"), "./cmd/kubectl-lb")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kubectl-lb: %v\n%s", err, out)
	}
	return dir
}

// catalogFrom loads the embedded prices overridden by the ConfigMap as the
// apiserver stores it.
func catalogFrom(t *testing.T, c client.Client, cm *corev1.ConfigMap) *pricing.Catalog {
	t.Helper()
	stored := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(cm), stored); err != nil {
		t.Fatal(err)
	}
	override, err := pricing.ParseConfigMap(stored)
	if err != nil {
		t.Fatal(err)
	}
	base, err := pricing.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := pricing.Load(base, override)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// troublesThroughKubectl runs issue 21's cases through the real kubectl
// against the operator: a Service of 100 ports, one served through the
// default class, one of a class nobody serves, and the printer columns.
func troublesThroughKubectl(t *testing.T, k *kubectl, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	var hundred []int32
	for p := int32(8000); len(hundred) < 98; p++ {
		hundred = append(hundred, p)
	}
	plain := lbService("lab", "plain", 80)
	plain.Spec.LoadBalancerClass = nil
	other := lbService("lab", "other", 80)
	other.Spec.LoadBalancerClass = ptr.To("example.com/other")
	mustCreate(t, env.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab"}},
		lbService("lab", "many", append([]int32{80, 443}, hundred...)...), plain, other)
	waitFor(t, 60*time.Second, func() error {
		for _, name := range []string{"many", "plain"} {
			lb := &v1alpha1.LoadBalancer{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "lab", Name: name}, lb); err != nil {
				return err
			}
			if lb.Status.Address == "" || lb.Status.Endpoints == nil {
				return errors.New(name + " has no address or endpoint count yet")
			}
		}
		return nil
	})

	r := k.run("lb", "status", "-n", "lab")
	if r.code != 0 || column(t, r.stdout, "many", "PORTS") != "80/TCP,443/TCP,+98" {
		t.Errorf("status of 100 ports: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := column(t, r.stdout, "plain", "CLASS"); got != "lb.portico.dev/memory" {
		t.Errorf("status: class of a Service served through the default class = %q", got)
	}
	r = k.run("lb", "status", "-n", "lab", "-o", "wide")
	if !strings.Contains(r.stdout, "8000/TCP,8001/TCP,") || !strings.Contains(r.stdout, ",8097/TCP") {
		t.Errorf("status -o wide does not show every port:\n%.600s", r.stdout)
	}
	r = k.run("lb", "describe", "-n", "lab", "plain")
	if l := lineWith(t, r.stdout, "Class:"); !strings.Contains(l, "lb.portico.dev/memory") {
		t.Errorf("describe: %q, want the default class lb.portico.dev/memory as status shows it", l)
	}
	r = k.run("lb", "describe", "-n", "lab", "other")
	if l := lineWith(t, r.stdout, "LoadBalancer:"); r.code != 0 || strings.Contains(l, "yet") ||
		!strings.Contains(l, "no Portico backend in this cluster serves class example.com/other") || !strings.Contains(l, "lb.portico.dev/memory") {
		t.Errorf("describe of a Service of an unserved class: exit %d %q\n%s", r.code, l, r.stderr)
	}

	// The printer columns: the local allocator writes a pool's counts; an
	// unused pool shows ASSIGNED 0.
	pool := &v1alpha1.IPPool{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "office"}, pool); err != nil {
		t.Fatal(err)
	}
	pool.Status = v1alpha1.IPPoolStatus{Total: 14, Assigned: 0, Free: 14, ObservedGeneration: pool.Generation}
	if err := env.Client.Status().Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	r = k.run("get", "ippools")
	if r.code != 0 || column(t, r.stdout, "office", "ASSIGNED") != "0" {
		t.Errorf("kubectl get ippools: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = k.run("get", "loadbalancers", "-n", "lab")
	if r.code != 0 || column(t, r.stdout, "plain", "CLASS") != "lb.portico.dev/memory" || column(t, r.stdout, "many", "ENDPOINTS") != "0" {
		t.Errorf("kubectl get loadbalancers: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// startOperator runs portico-operator in-process with leader election on,
// as deployed; the returned function stops it and waits.
func startOperator(t *testing.T, env *testenv.Env, pricer *pricing.Catalog) func() {
	t.Helper()
	o := operator.DefaultOptions()
	o.Providers = []string{memory.Name}
	o.Instances = map[string]providers.Provider{providers.Class(memory.Name): memory.New(memory.Options{ClusterID: "test"})}
	o.ClusterID = "test"
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.LeaderElect, o.LeaderElectionNS = true, "portico-system"
	o.DefaultClass = providers.Class(memory.Name)
	o.Pricer = pricer
	ctx, cancel := context.WithCancel(context.Background())
	mgr, _, err := operator.New(ctx, env.Config, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("operator: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("operator did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return stop
}

func lbService(ns, name string, ports ...int32) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr.To(providers.Class(memory.Name)),
			Selector:          map[string]string{"app": name},
		},
	}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, Protocol: corev1.ProtocolTCP})
	}
	return s
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", timeout, err)
}
