package controllers

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

// ConditionReady is the Service condition Portico owns; its message explains
// any <pending> in kubectl get svc.
const ConditionReady = "lb.portico.dev/Ready"

// ConditionServing says whether the load balancer has a ready endpoint to
// send traffic to; Ready keeps its meaning (the load balancer exists).
const ConditionServing = "lb.portico.dev/Serving"

// Condition reasons and Event reasons.
const (
	ReasonEnsured          = "Ensured"
	ReasonEnsuring         = "Ensuring"
	ReasonSyncFailed       = "SyncFailed"
	ReasonProviderRetrying = "ProviderRetrying"
	ReasonNotOwned         = "ResourceNotOwned"
	ReasonDeleted          = "Deleted"
	ReasonClassChanged     = "ClassChanged"
	ReasonProviderDisabled = "ProviderDisabled"
	ReasonClassNotServed   = "ClassNotServed"
	ReasonPodTargets       = "NodePortsRequired"
	ReasonNoEndpoints      = "NoEndpoints"
	ReasonEndpointsReady   = "EndpointsReady"
	// ReasonRouted: addresses that reached no client (NoBGPSession...)
	// are advertised again.
	ReasonRouted = "Routed"
	// ReasonDegraded: the load balancer serves, but a backend reports a
	// problem (Ready's message carries it).
	ReasonDegraded = "Degraded"
)

// readyCondition returns the Ready condition for a successful Ensure.
func readyCondition(generation int64, st *providers.Status) metav1.Condition {
	c := metav1.Condition{
		Type:               ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             ReasonEnsured,
		ObservedGeneration: generation,
		Message:            "load balancer is provisioned",
	}
	if len(st.Ingress) == 0 {
		c.Status = metav1.ConditionFalse
		c.Reason = "NoAddress"
		c.Message = "the backend provisioned the load balancer but reported no address yet"
		return c
	}
	if st.NotReady != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, st.NotReady.Reason, st.NotReady.Message
		return c
	}
	var failing []string
	for _, p := range st.Ports {
		if p.Error != "" {
			failing = append(failing, fmt.Sprintf("%d/%s: %s", p.Port, p.Protocol, p.Error))
		}
	}
	if len(failing) > 0 {
		c.Reason = "PortErrors"
		c.Message = fmt.Sprintf("load balancer is provisioned but some ports report errors: %v", failing)
	}
	if st.Warning != "" {
		c.Message += "; " + st.Warning
	}
	return c
}

// routingEvent tells the user when the load balancer is built but its
// addresses stop reaching clients (a backend's Status.NotReady, e.g. no BGP
// session), and when they reach them again.
func (r *ServiceReconciler) routingEvent(svc *corev1.Service, st *providers.Status, c metav1.Condition) {
	prev := meta.FindStatusCondition(svc.Status.Conditions, ConditionReady)
	switch {
	case st.NotReady != nil && (prev == nil || prev.Status != c.Status || prev.Reason != c.Reason || prev.Message != c.Message):
		r.event(svc, corev1.EventTypeWarning, c.Reason, "Route", "%s", c.Message)
	case c.Status == metav1.ConditionTrue && prev != nil && prev.Status == metav1.ConditionFalse && routingReasons[prev.Reason]:
		r.event(svc, corev1.EventTypeNormal, ReasonRouted, "Route", "%s", c.Message)
	}
}

// degradedEvent tells the user when a load balancer that still serves
// reports a problem (a backend's Status.Warning, e.g. an L2AndBGP address
// that no node advertises over BGP), once per new warning.
func (r *ServiceReconciler) degradedEvent(svc *corev1.Service, st *providers.Status) {
	if st.Warning == "" {
		return
	}
	if prev := meta.FindStatusCondition(svc.Status.Conditions, ConditionReady); prev != nil && strings.HasSuffix(prev.Message, "; "+st.Warning) {
		return
	}
	r.event(svc, corev1.EventTypeWarning, ReasonDegraded, "Route", "%s", st.Warning)
}

// routingReasons are the reasons of a backend's Status.NotReady.
var routingReasons = map[string]bool{
	providers.ReasonNoBGPPeer: true, providers.ReasonNoBGPSession: true, providers.ReasonNotAdvertised: true,
}

// failedCondition classifies a reconcile error into the Ready condition.
// It is pure: the same error always gives the same condition.
func failedCondition(generation int64, class string, err error) metav1.Condition {
	c := metav1.Condition{
		Type:               ConditionReady,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: generation,
	}
	var (
		ce *providers.ConfigError
		no *providers.NotOwnedError
		re *providers.RetryError
	)
	switch {
	case errors.As(err, &ce):
		c.Reason = ce.Reason
		c.Message = ce.Message
	case errors.As(err, &no):
		c.Reason = ReasonNotOwned
		c.Message = no.Error()
	case errors.As(err, &re):
		c.Reason = ReasonProviderRetrying
		c.Message = fmt.Sprintf("%s backend is retrying: %v", class, err)
	default:
		c.Reason = ReasonSyncFailed
		c.Message = fmt.Sprintf("%s backend failed: %v", class, err)
	}
	if c.Reason == "" {
		c.Reason = ReasonSyncFailed
	}
	const maxMessage = 1024
	if len(c.Message) > maxMessage {
		c.Message = c.Message[:maxMessage-3] + "..."
	}
	return c
}

// servingCondition says whether svc has a ready endpoint, and why not: the
// most common reason a load balancer "does not work" is a selector that
// matches no pod. It also counts the endpoints for the record.
func servingCondition(generation int64, svc *corev1.Service, eps []providers.Endpoint) (metav1.Condition, lbv1.EndpointsStatus) {
	st := lbv1.EndpointsStatus{Total: int32(len(eps)), Nodes: []string{}}
	for _, ep := range eps {
		if !ep.Ready {
			continue
		}
		st.Ready++
		if ep.NodeName != "" && !slices.Contains(st.Nodes, ep.NodeName) {
			st.Nodes = append(st.Nodes, ep.NodeName)
		}
	}
	slices.Sort(st.Nodes)
	c := metav1.Condition{Type: ConditionServing, Status: metav1.ConditionTrue, Reason: ReasonEndpointsReady,
		ObservedGeneration: generation, Message: "ready endpoints serve the Service"}
	if st.Ready > 0 {
		return c, st
	}
	c.Status, c.Reason = metav1.ConditionFalse, ReasonNoEndpoints
	selector := labels.SelectorFromSet(svc.Spec.Selector).String()
	switch {
	case len(svc.Spec.Selector) == 0:
		c.Message = "no ready endpoint: the Service has no selector and its EndpointSlices list no ready endpoint"
	case len(eps) == 0:
		c.Message = fmt.Sprintf("no ready endpoint: no pod matches the selector %s in namespace %s (kubectl get pods -n %s -l %s)", selector, svc.Namespace, svc.Namespace, selector)
	default:
		c.Message = fmt.Sprintf("no ready endpoint: %d pods match the selector %s, none is ready", len(eps), selector)
	}
	return c, st
}
