// What the Service controller writes: the Service's status (address and
// Ready condition) and the LoadBalancer record (class, addresses, backends,
// cost), each only when it changed.

package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/pricing"
	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/usage"
)

// dropAddresses clears the addresses from the Service's and the record's
// status. It patches unconditionally: the cache may not show the write that
// added them yet, and a merge patch against a stale copy would be empty.
func (r *ServiceReconciler) dropAddresses(ctx context.Context, svc *corev1.Service, record *lbv1.LoadBalancer) error {
	if err := r.Client.Status().Patch(ctx, svc, client.RawPatch(types.MergePatchType, []byte(`{"status":{"loadBalancer":{"ingress":null}}}`))); err != nil {
		return fmt.Errorf("dropping released addresses from Service status: %w", err)
	}
	if record == nil {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, record, client.RawPatch(types.MergePatchType, []byte(`{"status":{"addresses":null,"address":null}}`))); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("dropping released addresses from LoadBalancer status: %w", err))
	}
	return nil
}

// writeServiceStatus sets ingress and conditions (Ready, Serving), writing
// only when something changed.
func (r *ServiceReconciler) writeServiceStatus(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress, conds ...metav1.Condition) error {
	orig := svc.Status.DeepCopy()
	svc.Status.LoadBalancer.Ingress = ingress
	for _, c := range conds {
		meta.SetStatusCondition(&svc.Status.Conditions, c)
	}
	if equality.Semantic.DeepEqual(*orig, svc.Status) {
		return nil
	}
	// A strategic merge patch merges conditions by type: it changes only
	// Portico's own, whatever a stale cached copy held of the others (a JSON
	// merge patch would replace the whole list).
	patch, err := serviceStatusPatch(orig, svc)
	if err != nil {
		return fmt.Errorf("writing Service status: %w", err)
	}
	if err := r.Client.Status().Patch(ctx, svc, patch); err != nil {
		return fmt.Errorf("writing Service status: %w", err)
	}
	return nil
}

func (r *ServiceReconciler) clearServiceStatus(ctx context.Context, svc *corev1.Service) error {
	orig := svc.Status.DeepCopy()
	svc.Status.LoadBalancer = corev1.LoadBalancerStatus{}
	meta.RemoveStatusCondition(&svc.Status.Conditions, ConditionReady)
	meta.RemoveStatusCondition(&svc.Status.Conditions, ConditionServing)
	if equality.Semantic.DeepEqual(*orig, svc.Status) {
		return nil
	}
	patch, err := serviceStatusPatch(orig, svc)
	if err != nil {
		return fmt.Errorf("clearing Service status: %w", err)
	}
	return client.IgnoreNotFound(r.Client.Status().Patch(ctx, svc, patch))
}

func (r *ServiceReconciler) getRecord(ctx context.Context, svc *corev1.Service) (*lbv1.LoadBalancer, error) {
	rec := &lbv1.LoadBalancer{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(svc), rec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading LoadBalancer record: %w", err)
	}
	if !metav1.IsControlledBy(rec, svc) {
		// A record of an earlier Service with the same name, awaiting
		// garbage collection: not ours to read.
		return nil, nil
	}
	return rec, nil
}

// writeRecord creates the LoadBalancer record if needed and updates its
// status from st (success) or failure (failed condition), writing only when
// something changed.
func (r *ServiceReconciler) writeRecord(ctx context.Context, svc *corev1.Service, rec *lbv1.LoadBalancer, class string, st *providers.Status, hash string, eps *lbv1.EndpointsStatus, failure *metav1.Condition) error {
	rec, err := r.ensureRecord(ctx, svc, rec, class)
	if err != nil {
		return err
	}
	orig := rec.Status.DeepCopy()
	s := &rec.Status
	s.Class = class
	if failure != nil {
		meta.SetStatusCondition(&s.Conditions, *failure)
		s.Ready = string(failure.Status)
	} else {
		fillRecordStatus(s, st)
		s.Endpoints = eps
		cond := readyCondition(svc.Generation, st)
		meta.SetStatusCondition(&s.Conditions, cond)
		s.Ready = string(cond.Status)
		s.AppliedHash = hash
		s.ObservedGeneration = svc.Generation
		r.price(ctx, svc, class, st, s)
		if !equality.Semantic.DeepEqual(*orig, rec.Status) || s.LastSyncTime == nil {
			s.LastSyncTime = ptr.To(metav1.Now())
		}
	}
	if equality.Semantic.DeepEqual(*orig, rec.Status) {
		return nil
	}
	patch, err := recordStatusPatch(orig, rec)
	if err != nil {
		return fmt.Errorf("writing LoadBalancer status: %w", err)
	}
	if err := r.Client.Status().Patch(ctx, rec, patch); err != nil {
		return fmt.Errorf("writing LoadBalancer status: %w", err)
	}
	return nil
}

// ensureRecord creates svc's LoadBalancer record, naming class, unless rec
// already is it.
func (r *ServiceReconciler) ensureRecord(ctx context.Context, svc *corev1.Service, rec *lbv1.LoadBalancer, class string) (*lbv1.LoadBalancer, error) {
	if rec != nil {
		return rec, nil
	}
	rec = &lbv1.LoadBalancer{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name},
		Spec:       lbv1.LoadBalancerSpec{Class: class},
	}
	if err := controllerutil.SetControllerReference(svc, rec, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, rec); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating LoadBalancer record: %w", err)
		}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(rec), rec); err != nil {
			return nil, fmt.Errorf("reading LoadBalancer record: %w", err)
		}
		return rec, nil
	}
	r.wroteOwnRecord(svc, rec)
	return rec, nil
}

func fillRecordStatus(s *lbv1.LoadBalancerStatus, st *providers.Status) {
	s.Addresses = nil
	for _, in := range st.Ingress {
		a := lbv1.LoadBalancerAddress{Hostname: in.Hostname, IPMode: string(in.IPMode), Node: in.Node}
		if in.IP.IsValid() {
			a.IP = in.IP.String()
		}
		s.Addresses = append(s.Addresses, a)
	}
	s.Address = ""
	if len(s.Addresses) > 0 {
		s.Address = s.Addresses[0].IP
		if s.Address == "" {
			s.Address = s.Addresses[0].Hostname
		}
	}
	s.Ports = nil
	for _, p := range st.Ports {
		s.Ports = append(s.Ports, lbv1.PortStatus{Port: p.Port, Protocol: string(p.Protocol), Error: p.Error})
	}
	s.Resources = nil
	for _, res := range st.Resources {
		s.Resources = append(s.Resources, lbv1.ProviderResource{Kind: res.Kind, ID: res.ID})
	}
	s.BGP = st.BGP
	s.Backends = lbv1.BackendStatus{Total: int32(st.Backends.Total), Healthy: int32(st.Backends.Healthy)}
	if st.Backends.Healthy < 0 {
		s.BackendsSummary = fmt.Sprintf("?/%d", st.Backends.Total)
	} else {
		s.BackendsSummary = fmt.Sprintf("%d/%d", st.Backends.Healthy, st.Backends.Total)
	}
}

// price fills the cost fields; a pricing failure becomes a condition on the
// record, never a silent zero.
func (r *ServiceReconciler) price(ctx context.Context, svc *corev1.Service, class string, st *providers.Status, s *lbv1.LoadBalancerStatus) {
	if r.Pricer == nil {
		return
	}
	cost, err := r.priceWithUsage(svc, class, st.Cost, s)
	if r.CostMetrics != nil {
		if merr := r.CostMetrics.Set(svc.Namespace, svc.Name, class, cost); merr != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("Exporting cost metric failed", "err", merr.Error())
		}
	}
	cond := pricing.Condition(cost, err, svc.Generation)
	if prev := meta.FindStatusCondition(s.Conditions, pricing.ConditionType); cond.Status == metav1.ConditionFalse &&
		(prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason) {
		r.event(svc, corev1.EventTypeWarning, cond.Reason, "Price", "%s", cond.Message)
	}
	meta.SetStatusCondition(&s.Conditions, cond)
	if err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Pricing failed", "err", err.Error())
	}
	if cost == nil {
		s.Cost, s.MonthlyCost = nil, ""
		return
	}
	// A cost with an error is the last good price, kept while the price
	// source gives bad data; the condition says so.
	s.Cost = cost
	s.MonthlyCost = cost.Monthly + " " + cost.Currency
}

// priceWithUsage prices in with its metered usage when a usage meter is
// set, and reports the reading in the UsageMeasured condition (a Warning
// Event when it turns False or changes reason). Usage that cannot be read
// or priced leaves the cost to the price list's estimate: the condition
// says why, and neither a failed reading nor an unpriced quantity becomes
// a zero or takes the fixed cost away.
func (r *ServiceReconciler) priceWithUsage(svc *corev1.Service, class string, in providers.CostInputs, s *lbv1.LoadBalancerStatus) (*lbv1.CostStatus, error) {
	if r.Usage == nil {
		return r.Pricer.Price(class, in)
	}
	u, uerr := r.Usage.Usage(in)
	if u == nil && uerr == nil {
		meta.RemoveStatusCondition(&s.Conditions, usage.ConditionType)
		return r.Pricer.Price(class, in)
	}
	if u != nil {
		// Hours before the Service existed are no part of its usage.
		var serr error
		if u, serr = usage.Since(u, svc.CreationTimestamp.Time); serr != nil && uerr == nil {
			uerr = serr
		}
	}
	in.Usage = u
	cost, err := r.Pricer.Price(class, in)
	if u != nil && err != nil {
		// Is it the usage that cannot be priced? Then the estimate
		// stands and the usage condition says why; otherwise the price
		// data is at fault, which the Priced condition reports.
		base := in
		base.Usage = nil
		if bcost, berr := r.Pricer.Price(class, base); berr == nil {
			var pe *pricing.Error
			uerr = err
			if errors.As(err, &pe) {
				uerr = &usage.Error{Reason: pe.Reason, Message: "pricing the usage: " + pe.Message}
			}
			cost, err, u = bcost, nil, nil
		}
	}
	cond := usage.Condition(u, uerr, svc.Generation)
	if prev := meta.FindStatusCondition(s.Conditions, usage.ConditionType); cond.Status == metav1.ConditionFalse &&
		(prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason) {
		r.event(svc, corev1.EventTypeWarning, cond.Reason, "MeasureUsage", "%s", cond.Message)
	}
	meta.SetStatusCondition(&s.Conditions, cond)
	return cost, err
}

func ingressOf(st *providers.Status) []corev1.LoadBalancerIngress {
	var out []corev1.LoadBalancerIngress
	for _, in := range st.Ingress {
		ing := corev1.LoadBalancerIngress{Hostname: in.Hostname}
		if in.IP.IsValid() {
			ing.IP = in.IP.String()
			if in.IPMode != "" {
				ing.IPMode = ptr.To(corev1.LoadBalancerIPMode(in.IPMode))
			}
		}
		for _, p := range st.Ports {
			ps := corev1.PortStatus{Port: p.Port, Protocol: corev1.Protocol(p.Protocol)}
			if p.Error != "" {
				ps.Error = ptr.To(portErrorReason(p.Error))
			}
			ing.Ports = append(ing.Ports, ps)
		}
		out = append(out, ing)
	}
	return out
}

// portErrorReason turns a provider's port error into the CamelCase reason the
// Service API accepts.
func portErrorReason(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "lb.portico.dev/PortError"
		}
	}
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 316 {
		return "lb.portico.dev/PortError"
	}
	return s
}

func addressList(st *providers.Status) string {
	var out []string
	for _, in := range st.Ingress {
		if in.IP.IsValid() {
			out = append(out, in.IP.String())
		} else {
			out = append(out, in.Hostname)
		}
	}
	if len(out) == 0 {
		return "<none>"
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// writeEndpoints updates the record's endpoint counts when they changed.
//
// The cached record may predate this process's own last write (the Ensure
// that made it up to date wrote the endpoints a moment ago): what this
// process remembers writing counts as written, so a Service costs one record
// status write per change, not two.
func (r *ServiceReconciler) writeEndpoints(ctx context.Context, rec *lbv1.LoadBalancer, eps lbv1.EndpointsStatus) error {
	if rec == nil || equality.Semantic.DeepEqual(rec.Status.Endpoints, &eps) {
		return nil
	}
	key := client.ObjectKeyFromObject(rec)
	if r.wroteEndpoints(key, &eps, false) {
		return nil
	}
	orig := rec.Status.DeepCopy()
	rec.Status.Endpoints = &eps
	patch, err := recordStatusPatch(orig, rec)
	if err != nil {
		return fmt.Errorf("writing LoadBalancer endpoints: %w", err)
	}
	if err := r.Client.Status().Patch(ctx, rec, patch); err != nil {
		return fmt.Errorf("writing LoadBalancer endpoints: %w", err)
	}
	r.wroteEndpoints(key, &eps, true)
	return nil
}

// servingEvent returns the Event (type and reason, or "" for none) for a
// change of the Serving condition from prev to c. Events mark changes of
// whether the Service can carry traffic: losing its last ready endpoint is a
// Warning, getting one is Normal. A Service seen for the first time (prev
// nil) costs no Event whatever its endpoints: most Services are created
// before their pods (Helm installs Services before Deployments), so a Warning
// then would be noise and a write per Service; the condition says why the
// Service is not serving, and a message change while it stays False (pods
// found but none ready) only updates the condition.
func servingEvent(prev *metav1.Condition, c metav1.Condition) (eventType, reason string) {
	switch {
	case prev == nil || prev.Status == c.Status:
		return "", ""
	case c.Status == metav1.ConditionFalse && prev.Status == metav1.ConditionTrue:
		return corev1.EventTypeWarning, ReasonNoEndpoints
	case c.Status == metav1.ConditionTrue:
		return corev1.EventTypeNormal, ReasonEndpointsReady
	}
	return "", ""
}

// emitServingEvent records servingEvent's Event for svc, if any.
func (r *ServiceReconciler) emitServingEvent(svc *corev1.Service, c metav1.Condition) {
	if typ, reason := servingEvent(meta.FindStatusCondition(svc.Status.Conditions, ConditionServing), c); typ != "" {
		r.event(svc, typ, reason, "Serve", "%s", c.Message)
	}
}
