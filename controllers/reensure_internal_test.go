package controllers

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestReensureKeepsABurst: every Service of a burst given to Reensure is
// enqueued, however many. A BGP session going down concerns every Service
// routed over it at once; before, Reensure sent one event per Service into a
// channel of 128 and dropped the rest until their resync.
func TestReensureKeepsABurst(t *testing.T) {
	r := &ServiceReconciler{pending: make(chan event.GenericEvent, 128), reensured: make(chan event.GenericEvent, 1)}
	var keys []types.NamespacedName
	for i := range 1000 {
		keys = append(keys, types.NamespacedName{Namespace: "ns", Name: fmt.Sprint("svc-", i)})
	}
	r.Reensure(keys[:400])
	r.Reensure(keys[400:])
	// What the controller's sources enqueue from what the channels hold.
	got := map[types.NamespacedName]bool{}
	for _, ch := range []struct {
		c      chan event.GenericEvent
		toKeys func(context.Context, event.GenericEvent) []types.NamespacedName
	}{
		{r.pending, func(ctx context.Context, e event.GenericEvent) []types.NamespacedName {
			return requests(r.pendingServices(ctx, e.Object))
		}},
		{r.reensured, func(ctx context.Context, e event.GenericEvent) []types.NamespacedName {
			return requests(r.marked(ctx, e.Object))
		}},
	} {
		for len(ch.c) > 0 {
			for _, k := range ch.toKeys(context.Background(), <-ch.c) {
				got[k] = true
			}
		}
	}
	for _, k := range keys {
		if !got[k] {
			t.Fatalf("%s was never enqueued (%d of %d were)", k, len(got), len(keys))
		}
		if r.upToDate(k, "") {
			t.Fatalf("%s is up to date: its next reconcile would not ensure it", k)
		}
	}
}

func requests(rs []reconcile.Request) []types.NamespacedName {
	out := make([]types.NamespacedName, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.NamespacedName)
	}
	return out
}
