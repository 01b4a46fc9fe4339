package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// captureBackend records the options its factory was called with, so a test
// sees the cluster ID a cloud backend would get.
type captureBackend struct{ got chan providers.Options }

func (c *captureBackend) AddFlags(*pflag.FlagSet) {}
func (c *captureBackend) Factory() providers.Factory {
	return func(_ context.Context, opts providers.Options) (providers.Provider, error) {
		c.got <- opts
		return memory.New(memory.Options{ClusterID: opts.ClusterID}), nil
	}
}

// TestStartDerivesClusterID: an operator started without --cluster-id on a
// real apiserver, with only its generated RBAC, hands its backends the ID
// derived from the kube-system UID (never a shared fixed name), and records
// it as an Event on kube-system. An explicit --cluster-id still wins, and an
// invalid one stops the start with a clear error.
func TestStartDerivesClusterID(t *testing.T) {
	env := testenv.Start(t)
	cfg, err := env.OperatorConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ks corev1.Namespace
	testenv.Eventually(t, 30*time.Second, func() error {
		return env.Client.Get(ctx, types.NamespacedName{Name: "kube-system"}, &ks)
	})
	want := providers.DeriveClusterID(string(ks.UID))

	start := func(id string) (providers.Options, *Options, error) {
		capture := &captureBackend{got: make(chan providers.Options, 1)}
		o := DefaultOptions()
		o.ClusterID = id
		o.Backends["capture"] = capture
		o.Providers = []string{"capture"}
		o.MetricsAddr, o.ProbeAddr = "0", "0"
		o.PriceConfigMap = ""
		mgr, r, err := New(ctx, cfg, o)
		if err != nil {
			return providers.Options{}, o, err
		}
		got := <-capture.got
		if r.ClusterID != got.ClusterID {
			t.Errorf("the Service controller keys load balancers by %q, the backend by %q", r.ClusterID, got.ClusterID)
		}
		mctx, mcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mctx) }()
		t.Cleanup(func() { mcancel(); <-done })
		return got, o, nil
	}

	got, _, err := start("")
	if err != nil {
		t.Fatalf("start without --cluster-id: %v", err)
	}
	if got.ClusterID != want {
		t.Fatalf("backend got cluster ID %q, want %q derived from kube-system UID %s", got.ClusterID, want, ks.UID)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		var evs eventsv1.EventList
		if err := env.Client.List(ctx, &evs); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == ReasonClusterIdentity && e.Regarding.Name == "kube-system" && strings.Contains(e.Note, want) {
				return nil
			}
		}
		return fmt.Errorf("no %s Event on kube-system naming %s among %d events", ReasonClusterIdentity, want, len(evs.Items))
	})

	got, _, err = start("prod")
	if err != nil || got.ClusterID != "prod" {
		t.Fatalf("explicit --cluster-id=prod: backend got %q, err %v", got.ClusterID, err)
	}
	if _, _, err := start("Prod/EU"); err == nil || !strings.Contains(err.Error(), "--cluster-id") {
		t.Fatalf("invalid --cluster-id started or gave an unclear error: %v", err)
	}
}

// TestResolveClusterIDPerCluster: two clusters (two kube-system UIDs) left
// on the default get different IDs; each keeps its own across restarts.
func TestResolveClusterIDPerCluster(t *testing.T) {
	cluster := func(uid string) client.Reader {
		return fake.NewClientBuilder().WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: types.UID(uid)}}).Build()
	}
	a, b := cluster("3c0e5a8e-1d2b-4c6f-8a9e-7b5d3f1e0c2a"), cluster("9f8e7d6c-5b4a-4321-8fed-cba987654321")
	idA, err := ResolveClusterID(t.Context(), a, "")
	if err != nil {
		t.Fatal(err)
	}
	idB, err := ResolveClusterID(t.Context(), b, "")
	if err != nil {
		t.Fatal(err)
	}
	if idA.ID == idB.ID || !idA.Derived || !idB.Derived {
		t.Fatalf("two clusters: %+v and %+v", idA, idB)
	}
	again, _ := ResolveClusterID(t.Context(), a, "")
	if again.ID != idA.ID {
		t.Fatalf("restart changed the ID: %s then %s", idA.ID, again.ID)
	}
	if _, err := ResolveClusterID(t.Context(), fake.NewClientBuilder().Build(), ""); err == nil {
		t.Fatal("no kube-system namespace: want an error, not a fixed fallback ID")
	}
}
