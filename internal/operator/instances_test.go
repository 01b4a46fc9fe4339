package operator

import (
	"testing"

	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/portico-lb/portico/internal/eventrec"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/memory"
)

// TestNilInstanceBuildsTheBackend: Options.Instances with a nil entry for a
// class reads as "no instance given", in New as in Validate: New builds the
// class's backend from its factory. Before, Validate took the nil for
// absent while New installed it, and the first Service of the class
// panicked its reconcile (instrumented.Ensure on a nil backend).
func TestNilInstanceBuildsTheBackend(t *testing.T) {
	env := testenv.Start(t)
	cfg, err := env.OperatorConfig()
	if err != nil {
		t.Fatal(err)
	}
	capture := &captureBackend{got: make(chan providers.Options, 1)}
	o := DefaultOptions()
	o.ClusterID = "test"
	o.Backends["capture"] = capture
	o.Providers = []string{"capture"}
	o.Instances = map[string]providers.Provider{providers.Class("capture"): nil}
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.PriceConfigMap = ""
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	_, r, err := New(t.Context(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-capture.got:
	default:
		t.Error("the backend's factory was not called for a class whose instance is nil")
	}
	if _, ok := r.Providers[providers.Class("capture")]; !ok {
		t.Fatal("the Service controller has no backend for the class")
	}
}

// setupBackend is a backend with controllers of its own; it keeps the Event
// recorder the operator hands them.
type setupBackend struct {
	providers.Provider
	rec events.EventRecorder
}

func (b *setupBackend) SetupWithManager(_ manager.Manager, rec events.EventRecorder) error {
	b.rec = rec
	return nil
}

// TestBackendControllersShareTheRecorder: a backend's own controllers (the
// local backend's IPPool status) record their Events through the
// operator's one bounded recorder. Before, the local backend took the
// manager's, client-go's events broadcaster, whose unbounded cache of
// Events the operator's recorder replaced.
func TestBackendControllersShareTheRecorder(t *testing.T) {
	env := testenv.Start(t)
	cfg, err := env.OperatorConfig()
	if err != nil {
		t.Fatal(err)
	}
	b := &setupBackend{Provider: memory.New(memory.Options{ClusterID: "test"})}
	o := DefaultOptions()
	o.ClusterID = "test"
	o.Providers = []string{memory.Name}
	o.Instances = map[string]providers.Provider{providers.Class(memory.Name): b}
	o.MetricsAddr, o.ProbeAddr = "0", "0"
	o.PriceConfigMap = ""
	_, r, err := New(t.Context(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.rec.(*eventrec.Recorder); !ok || b.rec != r.Recorder {
		t.Fatalf("the backend's controllers record through %T, the Service controller through %T: want the operator's one eventrec.Recorder", b.rec, r.Recorder)
	}
}
