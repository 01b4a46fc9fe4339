package controllers

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/providers"
)

func TestFailedCondition(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantReason string
		wantMsg    string
	}{
		{"config error keeps its reason", providers.Configf("PoolExhausted", "pool %q has no free address", "default"), "PoolExhausted", `pool "default" has no free address`},
		{"wrapped config error", fmt.Errorf("ensuring: %w", providers.Configf("InvalidAnnotation", "bad")), "InvalidAnnotation", "bad"},
		{"not owned", &providers.NotOwnedError{Kind: "loadBalancer", ID: "x"}, ReasonNotOwned, "not owned by Portico"},
		{"retry", providers.Retry(errors.New("Throttling: rate exceeded"), 0), ReasonProviderRetrying, "aws backend is retrying: Throttling"},
		{"other", errors.New("boom"), ReasonSyncFailed, "aws backend failed: boom"},
		{"long message truncated", errors.New(strings.Repeat("x", 5000)), ReasonSyncFailed, "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := failedCondition(7, "aws", tc.err)
			if c.Type != ConditionReady || c.Status != metav1.ConditionFalse || c.ObservedGeneration != 7 {
				t.Fatalf("condition = %+v", c)
			}
			if c.Reason != tc.wantReason {
				t.Errorf("reason = %q, want %q", c.Reason, tc.wantReason)
			}
			if !strings.Contains(c.Message, tc.wantMsg) || len(c.Message) > 1024 {
				t.Errorf("message = %q (len %d), want it to contain %q and be at most 1024", c.Message, len(c.Message), tc.wantMsg)
			}
		})
	}
}

func TestReadyCondition(t *testing.T) {
	addr := []providers.Ingress{{IP: netip.MustParseAddr("192.0.2.1")}}
	tests := []struct {
		name       string
		st         providers.Status
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"address", providers.Status{Ingress: addr}, metav1.ConditionTrue, ReasonEnsured},
		{"no address", providers.Status{}, metav1.ConditionFalse, "NoAddress"},
		{"port errors", providers.Status{Ingress: addr, Ports: []providers.PortStatus{{Port: 80, Protocol: "TCP", Error: "ListenerFailed"}}}, metav1.ConditionTrue, "PortErrors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := readyCondition(3, &tc.st)
			if c.Status != tc.wantStatus || c.Reason != tc.wantReason || c.ObservedGeneration != 3 {
				t.Fatalf("got %s/%s gen %d, want %s/%s gen 3", c.Status, c.Reason, c.ObservedGeneration, tc.wantStatus, tc.wantReason)
			}
		})
	}
}
