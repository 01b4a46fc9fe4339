package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/controllers"
	"github.com/portico-lb/portico/internal/eventrec"
	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/operator"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
	"github.com/portico-lb/portico/providers/providertest"
)

const orphanNS = "portico-system"

// newScanner returns an orphan scanner that acts with the operator's own
// RBAC, as the operator does.
func newScanner(t *testing.T, p providers.Provider, del bool) *controllers.OrphanScanner {
	t.Helper()
	c, err := client.New(operatorConfig, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	rec := eventrec.New(kubernetes.NewForConfigOrDie(operatorConfig).EventsV1(), env.Scheme, eventrec.Options{Controller: "portico-operator"})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = rec.Start(ctx) }()
	t.Cleanup(cancel)
	return &controllers.OrphanScanner{
		Client: c, Reader: c, Recorder: rec,
		Providers: map[string]providers.Provider{p.Class(): p}, ClusterID: "test", Namespace: orphanNS,
		Interval: time.Hour, CallTimeout: 10 * time.Second, Delete: del, Gauge: controllers.NewOrphanGauge(nil),
	}
}

func readReport() (controllers.OrphanReport, error) {
	var rep controllers.OrphanReport
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: orphanNS, Name: controllers.OrphanReportName}, cm); err != nil {
		return rep, err
	}
	err := json.Unmarshal([]byte(cm.Data[controllers.OrphanReportKey]), &rep)
	return rep, err
}

// TestOrphanScan: a load balancer whose Service went away without Portico's
// cleanup (the finalizer removed by hand) is found by the scan, counted in
// portico_orphaned_resources, written to the report `kubectl lb orphans`
// reads and announced by an Event; it is deleted only with --delete-orphans,
// only when a second scan still finds it, and never a live Service's or
// another cluster's load balancer.
func TestOrphanScan(t *testing.T) {
	p := memory.New(memory.Options{ClusterID: "test"})
	run := startOperator(t, p)
	ns := namespace(t)
	kept := gen.Service(ns, "kept", gen.WithClass(memoryClass), gen.ForAPI())
	gone := gen.Service(ns, "gone", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, kept, gone)
	waitReady(t, kept)
	waitReady(t, gone)
	// Another cluster's load balancer in the same backend.
	foreign := providers.Key{ClusterID: "other", Namespace: ns, Name: "gone"}
	if _, err := p.Ensure(context.Background(), providertest.DefaultDesired(foreign, []string{"n"}, []providers.Port{providertest.TCP(80, 30080)})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: orphanNS, Name: controllers.OrphanReportName}})
	})

	// While the operator is down, the finalizer is removed by hand and the
	// Service deleted: Portico's cleanup never runs, the garbage collector
	// removes the record. (A running operator would put its finalizer back.)
	run.stop(t)
	g := get(t, gone.DeepCopy())
	orig := g.DeepCopy()
	g.Finalizers = nil
	if err := env.Client.Patch(context.Background(), g, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	deleteAndWait(t, gone)
	eventually(t, 30*time.Second, func() error {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(gone), &lbv1.LoadBalancer{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("record still there (%v)", err)
	})
	// The operator is back, and its own scan runs too, through its cached
	// client and RBAC.
	startOperator(t, p, func(o *operator.Options) { o.OrphanScanInterval = 300 * time.Millisecond })
	// Deleted while this test's operator still runs, so no later test's
	// operator adopts it.
	t.Cleanup(func() { deleteAndWait(t, kept) })
	goneLB := memory.ResourceName(providers.Key{ClusterID: "test", Namespace: ns, Name: "gone"})
	has := func(name string) bool {
		return slices.ContainsFunc(p.Resources(), func(r memory.Resource) bool { return r.ID == name })
	}
	if !has(goneLB) {
		t.Fatal("the load balancer of the Service deleted without cleanup is already gone")
	}

	eventually(t, 20*time.Second, func() error {
		if rep, err := readReport(); err != nil || len(rep.Orphans) != 1 || rep.Orphans[0].ID != goneLB {
			return fmt.Errorf("the operator's report lists %+v (%v)", rep.Orphans, err)
		}
		return nil
	})

	report := newScanner(t, p, false)
	for scan := range 2 {
		rep, err := report.Scan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Orphans) != 1 || rep.Orphans[0].ID != goneLB || rep.Orphans[0].Service != ns+"/gone" || rep.Orphans[0].Deleted {
			t.Fatalf("scan %d found %+v, want only %s of %s/gone, not deleted", scan, rep.Orphans, goneLB, ns)
		}
		if got := testutil.ToFloat64(report.Gauge.WithLabelValues(memoryClass, "loadBalancer")); got != 1 {
			t.Errorf("portico_orphaned_resources = %v, want 1", got)
		}
	}
	if !has(goneLB) {
		t.Fatal("the scan deleted an orphan without --delete-orphans")
	}
	if rep, err := readReport(); err != nil || len(rep.Orphans) != 1 || rep.ClusterID != "test" || rep.Deletion {
		t.Errorf("report ConfigMap %+v (%v)", rep, err)
	}
	waitReportEvent(t, controllers.ReasonOrphansFound)

	deleting := newScanner(t, p, true)
	rep, err := deleting.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !has(goneLB) || rep.Orphans[0].Deleted {
		t.Fatal("an orphan was deleted on the first scan that saw it")
	}
	rep, err = deleting.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Orphans) != 1 || !rep.Orphans[0].Deleted || has(goneLB) {
		t.Fatalf("second scan with --delete-orphans: %+v, load balancer present %v", rep.Orphans, has(goneLB))
	}
	waitReportEvent(t, controllers.ReasonOrphanDeleted)
	if !has(memory.ResourceName(foreign)) {
		t.Error("another cluster's load balancer was deleted")
	}
	if !has(memory.ResourceName(providers.Key{ClusterID: "test", Namespace: ns, Name: "kept"})) {
		t.Error("a live Service's load balancer was deleted")
	}
	rep, err = deleting.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Orphans) != 0 || testutil.ToFloat64(deleting.Gauge.WithLabelValues(memoryClass, "loadBalancer")) != 0 {
		t.Errorf("after deletion the scan still reports %+v", rep.Orphans)
	}
}

func waitReportEvent(t *testing.T, reason string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(orphanNS)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == reason && e.Regarding.Name == controllers.OrphanReportName {
				return nil
			}
		}
		return fmt.Errorf("no %s Event on %s/%s", reason, orphanNS, controllers.OrphanReportName)
	})
}

// digestOnly is a backend whose resources name their Service only by a
// digest (as Azure's frontends do): ListOwned reports fingerprints, and
// orphans go through DeleteOrphan.
type digestOnly struct {
	*memory.Provider
	deleted []string
}

func (d *digestOnly) ListOwned(ctx context.Context, clusterID string) ([]providers.Owned, error) {
	owned, err := d.Provider.ListOwned(ctx, clusterID)
	for i := range owned {
		owned[i].Fingerprint, owned[i].Service = d.Fingerprint(owned[i].Service), providers.Key{}
	}
	return owned, err
}

func (d *digestOnly) DeleteOrphan(_ context.Context, _ string, o providers.Owned) error {
	d.deleted = append(d.deleted, o.Fingerprint)
	return nil
}

// TestOrphanScanByFingerprint: a resource known only by a digest of its
// Service is an orphan exactly when no live Service has that digest; it is
// deleted through DeleteOrphan after two scans.
func TestOrphanScanByFingerprint(t *testing.T) {
	p := &digestOnly{Provider: memory.New(memory.Options{ClusterID: "test"})}
	withOperator(t, p.Provider)
	ns := namespace(t)
	kept := gen.Service(ns, "kept", gen.WithClass(memoryClass), gen.ForAPI())
	create(t, kept)
	waitReady(t, kept)
	t.Cleanup(func() { deleteAndWait(t, kept) })
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: orphanNS, Name: controllers.OrphanReportName}})
	})
	// A load balancer of a Service that never existed here.
	ghost := providers.Key{ClusterID: "test", Namespace: ns, Name: "ghost"}
	if _, err := p.Ensure(context.Background(), providertest.DefaultDesired(ghost, []string{"n"}, []providers.Port{providertest.TCP(80, 30080)})); err != nil {
		t.Fatal(err)
	}
	s := newScanner(t, p, true)
	s.Providers = map[string]providers.Provider{memoryClass: p}
	for scan := range 2 {
		rep, err := s.Scan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Orphans) != 1 || rep.Orphans[0].ID != memory.ResourceName(ghost) || rep.Orphans[0].Deleted != (scan == 1) {
			t.Fatalf("scan %d: %+v", scan, rep.Orphans)
		}
	}
	if len(p.deleted) != 1 || p.deleted[0] != memory.ResourceName(ghost) {
		t.Errorf("DeleteOrphan calls %v, want only the ghost's", p.deleted)
	}
}
