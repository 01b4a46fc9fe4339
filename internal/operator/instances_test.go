package operator

import (
	"testing"

	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/providers"
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
