package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestServingEvent: Events mark changes of whether a Service can carry
// traffic. A new Service without a ready endpoint (created before its pods,
// as Helm and kubectl apply of a directory do) costs no Event: its Serving
// condition says so. Losing the last ready endpoint is a Warning; getting one
// is Normal.
func TestServingEvent(t *testing.T) {
	noPod := metav1.Condition{Type: ConditionServing, Status: metav1.ConditionFalse, Reason: ReasonNoEndpoints, Message: "no ready endpoint: no pod matches"}
	unready := metav1.Condition{Type: ConditionServing, Status: metav1.ConditionFalse, Reason: ReasonNoEndpoints, Message: "no ready endpoint: 2 pods match, none is ready"}
	ready := metav1.Condition{Type: ConditionServing, Status: metav1.ConditionTrue, Reason: ReasonEndpointsReady, Message: "ready endpoints serve the Service"}
	for _, tc := range []struct {
		name       string
		prev       *metav1.Condition
		now        metav1.Condition
		wantType   string
		wantReason string
	}{
		{"new Service without endpoints", nil, noPod, "", ""},
		{"new Service with endpoints", nil, ready, "", ""},
		{"lost its last ready endpoint", &ready, noPod, corev1.EventTypeWarning, ReasonNoEndpoints},
		{"still none", &noPod, noPod, "", ""},
		{"pods appear, none ready yet", &noPod, unready, "", ""},
		{"first ready endpoint", &noPod, ready, corev1.EventTypeNormal, ReasonEndpointsReady},
		{"ready endpoint back", &unready, ready, corev1.EventTypeNormal, ReasonEndpointsReady},
		{"still ready", &ready, ready, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, reason := servingEvent(tc.prev, tc.now)
			if typ != tc.wantType || reason != tc.wantReason {
				t.Errorf("servingEvent = %q %q, want %q %q", typ, reason, tc.wantType, tc.wantReason)
			}
		})
	}
}
