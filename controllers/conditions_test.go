package controllers

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/internal/gen"
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
		{"address routed nowhere", providers.Status{Ingress: addr, NotReady: &providers.Problem{Reason: providers.ReasonNoBGPSession, Message: "no session"}}, metav1.ConditionFalse, providers.ReasonNoBGPSession},
		{"degraded but serving", providers.Status{Ingress: addr, Warning: "BGP: no session; L2 still answers for it"}, metav1.ConditionTrue, ReasonEnsured},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := readyCondition(3, &tc.st)
			if c.Status != tc.wantStatus || c.Reason != tc.wantReason || c.ObservedGeneration != 3 {
				t.Fatalf("got %s/%s gen %d, want %s/%s gen 3", c.Status, c.Reason, c.ObservedGeneration, tc.wantStatus, tc.wantReason)
			}
			if tc.st.NotReady != nil && c.Message != tc.st.NotReady.Message || tc.st.Warning != "" && !strings.HasSuffix(c.Message, "; "+tc.st.Warning) {
				t.Errorf("message %q does not carry the backend's problem", c.Message)
			}
		})
	}
}

func TestServingCondition(t *testing.T) {
	ep := func(ip, node string, ready bool) providers.Endpoint {
		return providers.Endpoint{IP: netip.MustParseAddr(ip), NodeName: node, Ready: ready}
	}
	selected := gen.Service("ns", "web")
	manual := gen.Service("ns", "manual")
	manual.Spec.Selector = nil
	tests := []struct {
		name      string
		svc       *corev1.Service
		endpoints []providers.Endpoint
		status    metav1.ConditionStatus
		reason    string
		message   string // substring
		ready     int32
		nodes     string
	}{
		{"selector matches no pod", selected, nil, metav1.ConditionFalse, ReasonNoEndpoints, "no pod matches the selector app=web", 0, "[]"},
		{"pods match but none ready", selected, []providers.Endpoint{ep("10.1.0.1", "a", false), ep("10.1.0.2", "b", false)},
			metav1.ConditionFalse, ReasonNoEndpoints, "2 pods match the selector app=web, none is ready", 0, "[]"},
		{"no selector, no endpoints", manual, nil, metav1.ConditionFalse, ReasonNoEndpoints, "has no selector and its EndpointSlices list no ready endpoint", 0, "[]"},
		{"ready endpoints on two nodes", selected, []providers.Endpoint{ep("10.1.0.1", "b", true), ep("10.1.0.2", "a", true), ep("10.1.0.3", "a", false)},
			metav1.ConditionTrue, ReasonEndpointsReady, "ready endpoints serve the Service", 2, "[a b]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, eps := servingCondition(7, tc.svc, tc.endpoints)
			if c.Type != ConditionServing || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) || c.ObservedGeneration != 7 {
				t.Errorf("condition %+v, want %s/%s containing %q", c, tc.status, tc.reason, tc.message)
			}
			if eps.Ready != tc.ready || eps.Total != int32(len(tc.endpoints)) || fmt.Sprint(eps.Nodes) != tc.nodes {
				t.Errorf("endpoints %+v, want ready %d nodes %s", eps, tc.ready, tc.nodes)
			}
		})
	}
}
