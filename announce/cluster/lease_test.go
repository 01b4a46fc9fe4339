package cluster

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestLeaseCarriesAnnotations(t *testing.T) {
	cl := fake.NewClientBuilder().Build()
	value := "v1"
	l := &Lease{Client: cl, Namespace: "portico-system", Node: "a", Duration: 40 * time.Second,
		Annotations: func() map[string]string { return map[string]string{"lb.portico.dev/forwarder-bytes": value} }}
	get := func() coordinationv1.Lease {
		t.Helper()
		var got coordinationv1.Lease
		if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "portico-system", Name: LeaseName("a")}, &got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, v := range []string{"v1", "v2"} {
		value = v
		if err := l.renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := get().Annotations["lb.portico.dev/forwarder-bytes"]; got != v {
			t.Errorf("annotation after renewing = %q, want %q", got, v)
		}
	}
	// Nothing to say (no snapshot yet): the old value is removed, never
	// left to be read as current.
	value = ""
	if err := l.renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, ok := get().Annotations["lb.portico.dev/forwarder-bytes"]; ok {
		t.Errorf("annotation kept as %q after the snapshot went away", got)
	}
}
