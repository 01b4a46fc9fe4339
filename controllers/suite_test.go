package controllers_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// env is the control plane shared by this package's integration tests. Each
// test runs its own operator against it, in its own namespace, and removes
// what it created before the operator stops.
var env *testenv.Env

// operatorConfig holds only the operator's generated RBAC: the tests prove
// the ClusterRole is enough.
var operatorConfig *rest.Config

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		// Fuzzing runs one target, and this package's need no control
		// plane. The engine runs it in worker processes it stops at will;
		// a control plane a worker started outlived it, holding the
		// output pipe the engine waits on to close, and `go test -fuzz`
		// hung at the end of -fuzztime.
		os.Exit(m.Run())
	}
	var err error
	// kube-controller-manager runs beside the apiserver: the node lifecycle
	// controller marks a node whose heartbeat stops Unknown, the
	// EndpointSlice controller publishes selector Services, the garbage
	// collector removes records whose Service is gone. kwok is the kubelet
	// of the nodes annotated for it (TestBGPKwokHeartbeatsCostNothing).
	env, err = testenv.NewWith(testenv.Options{Controllers: true, Kwok: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting control plane:", err)
		os.Exit(1)
	}
	if operatorConfig, err = env.OperatorConfig(); err != nil {
		fmt.Fprintln(os.Stderr, "operator RBAC:", err)
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping control plane:", err)
		code = 1
	}
	os.Exit(code)
}

func zapLevel() zapcore.Level {
	if os.Getenv("PORTICO_TEST_VERBOSE") != "" {
		return -4
	}
	return 2 // errors only
}

const memoryClass = "lb.portico.dev/memory"

var nsCounter atomic.Int32

// namespace creates a fresh namespace for the test.
func namespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(name) > 60 {
		name = name[:60]
	}
	name = strings.TrimRight(name, "-")
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	// A test may leave Services behind, finalizers and all (a failed one,
	// or one that never deletes what it made); later tests' operators
	// would adopt them into their own backends and count their calls and
	// resources as their own (go test -count=2 failed seven tests so). Purge
	// them once the test's operators have stopped.
	t.Cleanup(func() {
		var list corev1.ServiceList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(name)); err != nil {
			return
		}
		for i := range list.Items {
			s := &list.Items[i]
			orig := s.DeepCopy()
			s.Finalizers = nil
			_ = env.Client.Patch(context.Background(), s, client.MergeFrom(orig))
			_ = env.Client.Delete(context.Background(), s)
		}
	})
	return name
}

// operatorRun is one in-process operator.
type operatorRun struct {
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func (o *operatorRun) stop(t *testing.T) {
	t.Helper()
	if o.stopped {
		return
	}
	o.stopped = true
	o.cancel()
	select {
	case err := <-o.done:
		if err != nil {
			t.Errorf("operator: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("operator did not stop within 30s")
	}
}

// startOperator runs the operator with p serving the memory class.
func startOperator(t *testing.T, p providers.Provider, mutate ...func(*operator.Options)) *operatorRun {
	t.Helper()
	o := operator.DefaultOptions()
	o.Providers = []string{memory.Name}
	o.Instances = map[string]providers.Provider{memoryClass: p}
	o.ClusterID = "test"
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.NodeBatchWindow = 100 * time.Millisecond
	o.RetryBase, o.RetryMax = 50*time.Millisecond, time.Second
	o.ConfigErrorBackoff = 2 * time.Second
	for _, m := range mutate {
		m(o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mgr, _, err := operator.New(ctx, operatorConfig, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	run := &operatorRun{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- mgr.Start(ctx) }()
	// A test that fails before it stops its operator must not leave it
	// serving the next tests' Services.
	t.Cleanup(func() { run.stop(t) })
	return run
}

// withOperator starts an operator for the test and, at cleanup, deletes the
// test's Services and Nodes and waits until the operator released them.
func withOperator(t *testing.T, p providers.Provider, mutate ...func(*operator.Options)) *operatorRun {
	t.Helper()
	run := startOperator(t, p, mutate...)
	t.Cleanup(func() { run.stop(t) })
	return run
}

// eventually polls f until it returns nil or the timeout passes.
// waitRecord waits until svc's LoadBalancer record exists (a cloud-like
// class's record follows its address, in the record pass).
func waitRecord(t *testing.T, svc *corev1.Service) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		return env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), &lbv1.LoadBalancer{})
	})
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", timeout, err)
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// createNode creates a node (status included) with a kubelet-like
// heartbeat, and deletes it at cleanup. Stop the heartbeat to make the node
// die: the node lifecycle controller then marks it Unknown.
func createNode(t *testing.T, n *corev1.Node) *testenv.Heartbeat {
	t.Helper()
	if err := testenv.CreateNodeWithStatus(context.Background(), env.Client, n); err != nil {
		t.Fatal(err)
	}
	hb := testenv.StartHeartbeat(env.Client, n.Name)
	t.Cleanup(func() {
		hb.Stop()
		_ = env.Client.Delete(context.Background(), n)
	})
	return hb
}

func get[T client.Object](t *testing.T, obj T) T {
	t.Helper()
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("get %s: %v", obj.GetName(), err)
	}
	return obj
}

// deleteAndWait deletes a Service and waits until the operator removed the
// finalizer and the object is gone.
func deleteAndWait(t *testing.T, svc *corev1.Service) {
	t.Helper()
	if err := env.Client.Delete(context.Background(), svc); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), &corev1.Service{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("service %s still exists (err %v)", svc.Name, err)
	})
}

// TestOperatorUserIsNotAdmin proves the operator's tests run without
// cluster-admin: the generated ClusterRole grants no access to Secrets.
func TestOperatorUserIsNotAdmin(t *testing.T) {
	c, err := client.New(operatorConfig, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	err = c.List(context.Background(), &corev1.SecretList{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets as the operator: got %v, want Forbidden", err)
	}
}
