package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/portico-lb/portico/internal/scheme"
)

// logConstructorOf returns the LogConstructor the Service controller calls
// for every reconcile, as SetupWithManager builds it, on a manager whose
// logger is log. No apiserver is needed: nothing is started.
func logConstructorOf(t *testing.T, log logr.Logger, build func(ctrl.Manager) (controller.Controller, error)) func(*reconcile.Request) logr.Logger {
	t.Helper()
	mgr, err := ctrl.NewManager(&rest.Config{Host: "http://127.0.0.1:1"}, ctrl.Options{
		Scheme: scheme.New(), Logger: log, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := build(mgr)
	if err != nil {
		t.Fatal(err)
	}
	// controller-runtime keeps the constructor in an exported field of its
	// internal controller type; reconcileHandler calls it per request.
	f := reflect.ValueOf(c).Elem().FieldByName("LogConstructor")
	if !f.IsValid() {
		t.Fatalf("%T has no LogConstructor field: controller-runtime changed, adapt this test", c)
	}
	return f.Interface().(func(*reconcile.Request) logr.Logger)
}

func serviceController(mgr ctrl.Manager) (controller.Controller, error) {
	r := &ServiceReconciler{}
	return r.newController(mgr, controller.Options{MaxConcurrentReconciles: 1})
}

// startReconcile does what controller-runtime's reconcileHandler does with
// the logger before it calls Reconcile, and what a reconcile that logs
// nothing at the default level then does with it.
func startReconcile(lc func(*reconcile.Request) logr.Logger, req *reconcile.Request, id types.UID) logr.Logger {
	log := lc(req)
	log = log.WithValues("reconcileID", id)
	log.V(5).Info("Reconciling")
	ctrl.LoggerFrom(logr.NewContext(context.Background(), log)).V(2).Info("Ensuring load balancer", "class", "c", "nodes", 3)
	log.V(5).Info("Reconcile successful")
	return log
}

// TestReconcileLoggerCostsLittleWhenSilent: the logger controller-runtime
// builds for every reconcile costs next to nothing when the reconcile logs
// nothing at the enabled level, as almost every reconcile does. Before,
// controller-runtime's default LogConstructor called zap's With for the
// Service key, namespace and name and again for the reconcileID: each
// cloned zap's JSON encoder (a pooled 1 kB buffer never returned) and
// encoded the values, about 6 kB per reconcile that was never written; in
// bench-scale's node flap that was a tenth of everything the operator
// allocated, and the allocation rate drives its peak heap.
func TestReconcileLoggerCostsLittleWhenSilent(t *testing.T) {
	var out bytes.Buffer
	lc := logConstructorOf(t, zap.New(zap.WriteTo(&out)), serviceController)
	const n = 2000
	reqs := make([]reconcile.Request, n)
	for i := range reqs {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i)}}
	}
	const id = types.UID("0b5e1c8a-7f0e-4c41-9a3e-4ad0c5f1e2a7")
	startReconcile(lc, &reqs[0], id) // warm pools and caches
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range reqs {
		startReconcile(lc, &reqs[i], id)
	}
	runtime.ReadMemStats(&after)
	perReconcile := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("building the reconcile logger: %d bytes, %.1f allocations per reconcile",
		perReconcile, float64(after.Mallocs-before.Mallocs)/n)
	if out.Len() != 0 {
		t.Fatalf("nothing should be logged at the info level, got %q", out.String())
	}
	// The deferred keys and values cost a few small objects (and the
	// context and arguments above some more); zap's clones cost kilobytes.
	if perReconcile > 1024 {
		t.Errorf("building the reconcile logger allocated %d bytes per reconcile, want <= 1024", perReconcile)
	}
}

// TestReconcileLoggerWritesWhatTheDefaultWrote: a line that is written
// carries exactly what controller-runtime's default reconcile logger wrote:
// the same keys, once each, in the same order, the caller of the line, the
// logger's name.
func TestReconcileLoggerWritesWhatTheDefaultWrote(t *testing.T) {
	lines := func(build func(ctrl.Manager) (controller.Controller, error)) []string {
		var out bytes.Buffer
		// V(2) enabled, as with --zap-log-level=2, and the caller recorded.
		log := zap.New(zap.WriteTo(&out), zap.Level(zapcore.Level(-2)), zap.RawZapOpts(uberzap.AddCaller()))
		lc := logConstructorOf(t, log, build)
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "web"}}
		log = startReconcile(lc, &req, "0b5e1c8a-7f0e-4c41-9a3e-4ad0c5f1e2a7")
		ctx := logr.NewContext(context.Background(), log)
		ctrl.LoggerFrom(ctx).V(2).Info("Ensuring load balancer", "class", "lb.portico.dev/memory")
		ctrl.LoggerFrom(ctx).WithValues("class", "lb.portico.dev/aws").Info("Releasing a load balancer on request")
		ctrl.LoggerFrom(ctx).WithName("retry").V(1).Info("Provider call failed, will retry", "reason", "Throttled")
		log.Error(errors.New("boom"), "Reconciler error")
		lc(nil).Info("Starting workers", "worker count", 1)
		ts := regexp.MustCompile(`"ts":"[^"]*",`)
		return strings.Split(strings.TrimSpace(ts.ReplaceAllString(out.String(), "")), "\n")
	}
	// Both from this one line: the Error line's stack names it.
	var def, got []string
	for i, build := range []func(ctrl.Manager) (controller.Controller, error){
		func(mgr ctrl.Manager) (controller.Controller, error) {
			// controller-runtime's builder with its own LogConstructor,
			// named and watching as the Service controller.
			return ctrl.NewControllerManagedBy(mgr).Named("service").For(&corev1.Service{}).
				WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
				Build(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) { return reconcile.Result{}, nil }))
		},
		serviceController,
	} {
		out := lines(build)
		if i == 0 {
			def = out
		} else {
			got = out
		}
	}
	if len(def) != 6 {
		t.Fatalf("the default logger wrote %d lines, want 6 (V(2) Info, Info, V(1) Info, Error with its stack, workers):\n%s",
			len(def), strings.Join(def, "\n"))
	}
	if diff := cmp.Diff(def, got); diff != "" {
		t.Errorf("lines differ from controller-runtime's default logger (-default +service):\n%s", diff)
	}
	want := []string{"level", "caller", "msg", "controller", "controllerGroup", "controllerKind", "Service", "namespace", "name", "reconcileID"}
	for _, l := range got[:5] {
		keys := topLevelKeys(t, l)
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("key %q appears twice: %s", k, l)
			}
			seen[k] = true
		}
		named := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "logger" })
		if len(named) < len(want) || !slices.Equal(named[:len(want)], want) {
			t.Errorf("keys %v, want %v first (besides a logger name): %s", keys, want, l)
		}
		if !strings.Contains(l, `"caller":"controllers/reconcile_logger_internal_test.go:`) {
			t.Errorf("the line does not name its caller in this test: %s", l)
		}
	}
}

// topLevelKeys returns the keys of a JSON log line's object, in order,
// repeated keys included.
func topLevelKeys(t *testing.T, line string) []string {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(line))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", line)
	}
	var keys []string
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%v in %s", err, line)
		}
	}
	return keys
}
