package controllers

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-lb/portico/providers"
)

// ConditionReady is the Service condition Portico owns; its message explains
// any <pending> in kubectl get svc.
const ConditionReady = "lb.portico.dev/Ready"

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
	return c
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
