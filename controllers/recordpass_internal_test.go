package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// TestRecordPassWaitsForAddressWork: a record pass is parked while another
// reconcile is on its way to a first address and released once address
// work has been quiet; a Service's own address work does not hold back its
// own pass.
func TestRecordPassWaitsForAddressWork(t *testing.T) {
	a := &addressWork{released: make(chan event.GenericEvent, 1)}
	web, db := types.NamespacedName{Namespace: "ns", Name: "web"}, types.NamespacedName{Namespace: "ns", Name: "db"}

	if a.park(web) {
		t.Fatal("parked with no address work at all")
	}
	a.set(web, true)
	if a.park(web) {
		t.Fatal("web's own address work held back web's record pass")
	}
	if !a.park(db) {
		t.Fatal("db's record pass went while web awaited its address")
	}
	select {
	case <-a.released:
		t.Fatal("released while web still awaited its address")
	default:
	}
	a.set(web, false)
	if !a.park(db) {
		t.Fatal("db's record pass went right after web's address: Services may still be arriving")
	}
	select {
	case <-a.released:
	case <-time.After(10 * time.Second):
		t.Fatal("parked record passes never released after address work went quiet")
	}
	got := a.takeParked()
	if len(got) != 1 || got[0].NamespacedName != db {
		t.Fatalf("released %v, want [%v]", got, db)
	}
	if a.park(db) {
		t.Fatal("parked although address work has been quiet")
	}
}

// TestSlowBackendStopsHoldingBack: a reconcile whose backend call takes long
// stops counting as address work until the call returns (a cloud building a
// load balancer for minutes does not use the apiserver meanwhile); a fast
// call keeps it counting throughout.
func TestSlowBackendStopsHoldingBack(t *testing.T) {
	a := &addressWork{}
	web := types.NamespacedName{Namespace: "ns", Name: "web"}
	active := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.active[web]
	}
	a.set(web, true)
	a.during(web, func() {})
	if !active() {
		t.Fatal("a fast backend call ended web's address work")
	}
	a.during(web, func() {
		deadline := time.Now().Add(20 * slowBackendAfter)
		for active() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if active() {
			t.Error("a slow backend call kept web counting as address work")
		}
	})
	if !active() {
		t.Fatal("web's address work did not resume after its backend call")
	}
}
