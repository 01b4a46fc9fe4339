// Package model is Portico's one reading of a Service and a Node. Every part
// of Portico (the Service controller, the local allocator and its IPPool
// status, the forwarder's announcer and its kernel data plane, kubectl lb)
// decides "is this Service ours, of which class, with which ports, source
// ranges, sharing key, and which nodes may carry it" through the functions
// here, so the answers cannot drift apart. The functions are pure: no clock,
// no client. k8s.io/cloud-provider's service helpers are the model.
package model

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/providers"
)

// Cloud-neutral Service annotations (docs/annotations.md). Provider
// annotations (aws.lb.portico.dev/<key>, ...) are read by each provider.
const (
	// AnnotationScheme is "external" (default) or "internal".
	AnnotationScheme = "lb.portico.dev/scheme"
	// AnnotationIP requests addresses: one IP, or an IPv4 and an IPv6
	// separated by a comma for dual-stack.
	AnnotationIP = "lb.portico.dev/ip"
	// AnnotationAllowSharedIP lets Services with the same key share an
	// address when they are compatible (local backend).
	AnnotationAllowSharedIP = "lb.portico.dev/allow-shared-ip"
	// AnnotationRelease, set to "true", tells Portico to delete a load
	// balancer it keeps for a Service whose class it no longer serves, and
	// to let the Service go.
	AnnotationRelease = "lb.portico.dev/release"
	// AnnotationBuiltClass is written by the operator, with its finalizer:
	// the class it builds the Service's load balancer through, for the time
	// before the Service's LoadBalancer record exists (a backend that stands
	// for a cloud gets its record after the address). The record, once
	// there, is what counts.
	AnnotationBuiltClass = "lb.portico.dev/built-class"
	// AnnotationSourceRanges is the legacy source-range annotation that
	// kube-proxy and the upstream cloud providers honour when
	// spec.loadBalancerSourceRanges is empty.
	AnnotationSourceRanges = corev1.AnnotationLoadBalancerSourceRangesKey
)

// Node labels and taints that take a node out of load-balancer backends.
const (
	LabelExcludeFromLB = corev1.LabelNodeExcludeBalancers
	// TaintToBeDeleted is set by the cluster autoscaler on a node it drains
	// before deleting it.
	TaintToBeDeleted = "ToBeDeletedByClusterAutoscaler"
	LabelZone        = corev1.LabelTopologyZone
)

// Condition reasons for what the user must fix in a Service.
const (
	ReasonInvalidAnnotation  = "InvalidAnnotation"
	ReasonInvalidSourceRange = "InvalidSourceRange"
	ReasonNoPorts            = "NoPorts"
	ReasonNodePortMissing    = "NodePortMissing"
)

// Classes is the operator's class setting: the classes it serves and the
// class that also takes LoadBalancer Services without
// spec.loadBalancerClass.
type Classes struct {
	// Enabled lists the classes whose backends run.
	Enabled []string
	// Default takes Services without spec.loadBalancerClass; empty leaves
	// them to another controller.
	Default string
}

// Requested returns the class svc asks for: spec.loadBalancerClass, else the
// default class; "" for a Service that is not of type LoadBalancer or that
// asks for no class while there is no default.
func (c Classes) Requested(svc *corev1.Service) string {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return ""
	}
	if svc.Spec.LoadBalancerClass != nil {
		return *svc.Spec.LoadBalancerClass
	}
	return c.Default
}

// For returns the enabled class that serves svc, or "" when none does.
func (c Classes) For(svc *corev1.Service) string {
	class := c.Requested(svc)
	if class == "" || !slices.Contains(c.Enabled, class) {
		return ""
	}
	return class
}

// Recorded returns the class that built svc's load balancer, as the
// operator recorded it in svc's LoadBalancer record (spec.class), or "" when
// svc is not a LoadBalancer Service or has no record of its own. This is
// how the parts that run beside the operator (the forwarder, the local
// allocator's rebuild, the IPPool status) learn which Services are of a
// class: from the operator's decision, never from a second rule. For the
// local class the operator writes the record before it asks the backend for
// an address (a cloud-like class's record follows its address).
func Recorded(svc *corev1.Service, rec *lbv1.LoadBalancer) string {
	if svc == nil || rec == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return ""
	}
	if rec.Namespace != svc.Namespace || rec.Name != svc.Name {
		return ""
	}
	if len(rec.OwnerReferences) > 0 && !ownedBy(rec, svc) {
		// A record of an earlier Service with the same name, awaiting
		// garbage collection.
		return ""
	}
	return rec.Spec.Class
}

func ownedBy(rec *lbv1.LoadBalancer, svc *corev1.Service) bool {
	for _, o := range rec.OwnerReferences {
		if o.UID == svc.UID {
			return true
		}
	}
	return false
}

// OfClass returns the Services whose records say class built them, in the
// order of svcs.
func OfClass(class string, svcs []corev1.Service, recs []lbv1.LoadBalancer) []*corev1.Service {
	byKey := make(map[string]*lbv1.LoadBalancer, len(recs))
	for i := range recs {
		byKey[recs[i].Namespace+"/"+recs[i].Name] = &recs[i]
	}
	var out []*corev1.Service
	for i := range svcs {
		s := &svcs[i]
		if Recorded(s, byKey[s.Namespace+"/"+s.Name]) == class {
			out = append(out, s)
		}
	}
	return out
}

// LocalClass is the class of the local backend.
var LocalClass = providers.Class("local")
