package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// +kubebuilder:rbac:groups="",namespace=portico-system,resources=configmaps,verbs=create
// +kubebuilder:rbac:groups="",namespace=portico-system,resources=configmaps,resourceNames=portico-orphans,verbs=update;patch

// The orphan report's ConfigMap, shared with kubectl lb (package model).
const (
	OrphanReportName = model.OrphanReportName
	OrphanReportKey  = model.OrphanReportKey
)

// Reasons of the orphan scan's Events (on the report ConfigMap).
const (
	ReasonOrphansFound   = "OrphansFound"
	ReasonOrphanDeleted  = "OrphanDeleted"
	ReasonOrphanScanFail = "OrphanScanFailed"
)

// OrphanReport and Orphan are the report's shape.
type (
	OrphanReport = model.OrphanReport
	Orphan       = model.Orphan
)

// OrphanScanner periodically lists, per backend, every resource that carries
// this cluster's ownership marks, and reports those whose Service is gone: a
// finalizer removed by hand, a Delete that never finished. It deletes them
// only with Delete set, only when two scans in a row found them, only after
// re-reading from the API server that no Service claims them, and only
// through the backend's own ownership checks.
type OrphanScanner struct {
	// Client reads Services and records from the cache and writes the
	// report; Reader reads from the API server before any deletion.
	Client    client.Client
	Reader    client.Reader
	Recorder  events.EventRecorder
	Providers map[string]providers.Provider
	ClusterID string
	Namespace string
	Interval  time.Duration
	// CallTimeout bounds each backend call.
	CallTimeout time.Duration
	Delete      bool
	Gauge       *prometheus.GaugeVec

	mu        sync.Mutex
	firstSeen map[string]time.Time // class|kind|id -> first scan that found it
}

// NewOrphanGauge returns portico_orphaned_resources, registered on reg when
// reg is not nil.
func NewOrphanGauge(reg prometheus.Registerer) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portico_orphaned_resources",
		Help: "Backend resources that carry this cluster's ownership marks but belong to no Service (last orphan scan), by class and kind.",
	}, []string{"class", "kind"})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// NeedLeaderElection: only the leader scans and deletes.
func (s *OrphanScanner) NeedLeaderElection() bool { return true }

// Start scans every Interval until ctx ends.
func (s *OrphanScanner) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("orphans")
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := s.Scan(ctx); err != nil && ctx.Err() == nil {
			log.Error(err, "Orphan scan failed")
		}
	}
}

// Scan runs one scan, deletes what may be deleted and writes the report.
func (s *OrphanScanner) Scan(ctx context.Context) (*OrphanReport, error) {
	now := time.Now()
	rep := &OrphanReport{ClusterID: s.ClusterID, ScannedAt: now.UTC().Truncate(time.Second), Deletion: s.Delete, Orphans: []Orphan{}}
	s.mu.Lock()
	if s.firstSeen == nil {
		s.firstSeen = map[string]time.Time{}
	}
	s.mu.Unlock()
	seen := map[string]bool{}
	counts := map[[2]string]float64{}
	for _, class := range slices.Sorted(maps.Keys(s.Providers)) {
		sc, ok := unwrapProvider(s.Providers[class]).(providers.OrphanScanner)
		if !ok {
			continue
		}
		owned, err := s.list(ctx, sc)
		if err != nil {
			if rep.Errors == nil {
				rep.Errors = map[string]string{}
			}
			rep.Errors[class] = err.Error()
			continue
		}
		var live map[string]bool // fingerprints of live Services, when needed
		for _, o := range owned {
			if o.Service.Name == "" && o.Fingerprint != "" && live == nil {
				if live, err = s.liveFingerprints(ctx, s.Client, sc); err != nil {
					return nil, err
				}
			}
			orphan, err := s.isOrphan(ctx, s.Client, o, live)
			if err != nil {
				return nil, err
			}
			if !orphan {
				continue
			}
			id := class + "|" + o.Kind + "|" + o.ID
			seen[id] = true
			s.mu.Lock()
			first, known := s.firstSeen[id]
			if !known {
				first = now
				s.firstSeen[id] = now
			}
			s.mu.Unlock()
			entry := Orphan{Class: class, Kind: o.Kind, ID: o.ID, FirstSeen: first.UTC().Truncate(time.Second)}
			if o.Service.Name != "" {
				entry.Service = o.Service.String()
			}
			if s.Delete && known {
				deleted, err := s.remove(ctx, s.Providers[class], sc, o)
				if err != nil {
					if rep.Errors == nil {
						rep.Errors = map[string]string{}
					}
					rep.Errors[class] = fmt.Sprintf("deleting %s %s: %v", o.Kind, o.ID, err)
				}
				entry.Deleted = deleted
			}
			if !entry.Deleted {
				counts[[2]string{class, o.Kind}]++
			}
			rep.Orphans = append(rep.Orphans, entry)
		}
	}
	s.mu.Lock()
	for id := range s.firstSeen {
		if !seen[id] {
			delete(s.firstSeen, id)
		}
	}
	s.mu.Unlock()
	if s.Gauge != nil {
		s.Gauge.Reset()
		for k, n := range counts {
			s.Gauge.WithLabelValues(k[0], k[1]).Set(n)
		}
	}
	return rep, s.publish(ctx, rep)
}

func (s *OrphanScanner) list(ctx context.Context, sc providers.OrphanScanner) ([]providers.Owned, error) {
	if s.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.CallTimeout)
		defer cancel()
	}
	return sc.ListOwned(ctx, s.ClusterID)
}

// isOrphan reports whether o belongs to no Service: its Service does not
// exist, or exists but neither is type LoadBalancer nor still carries
// Portico's finalizer (which a cleanup in progress holds), and no
// LoadBalancer record of that name is left.
func (s *OrphanScanner) isOrphan(ctx context.Context, r client.Reader, o providers.Owned, live map[string]bool) (bool, error) {
	if o.Service.Name == "" {
		if o.Fingerprint != "" {
			return !live[o.Fingerprint], nil
		}
		return o.Unreferenced, nil
	}
	nn := types.NamespacedName{Namespace: o.Service.Namespace, Name: o.Service.Name}
	svc := &corev1.Service{}
	switch err := r.Get(ctx, nn, svc); {
	case err == nil:
		if mayOwnResources(svc) {
			return false, nil
		}
	case !apierrors.IsNotFound(err):
		return false, err
	}
	switch err := r.Get(ctx, nn, &lbv1.LoadBalancer{}); {
	case err == nil:
		return false, nil
	case apierrors.IsNotFound(err):
		return true, nil
	default:
		return false, err
	}
}

// remove deletes an orphan found twice, after reading again from the API
// server (not the cache) that it is still an orphan.
func (s *OrphanScanner) remove(ctx context.Context, p providers.Provider, sc providers.OrphanScanner, o providers.Owned) (bool, error) {
	var live map[string]bool
	if o.Service.Name == "" && o.Fingerprint != "" {
		var err error
		if live, err = s.liveFingerprints(ctx, s.Reader, sc); err != nil {
			return false, err
		}
	}
	orphan, err := s.isOrphan(ctx, s.Reader, o, live)
	if err != nil || !orphan {
		return false, err
	}
	if s.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.CallTimeout)
		defer cancel()
	}
	if o.Service.Name != "" {
		err = p.Delete(ctx, o.Service)
	} else {
		err = sc.DeleteOrphan(ctx, s.ClusterID, o)
	}
	if err != nil {
		return false, err
	}
	if cm := s.reportObject(ctx); cm != nil && s.Recorder != nil {
		s.Recorder.Eventf(cm, nil, corev1.EventTypeNormal, ReasonOrphanDeleted, "DeleteOrphan",
			"Deleted %s %s (marked for %s), which no Service owns (--delete-orphans)", o.Kind, o.ID, markOf(o))
	}
	return true, nil
}

// mayOwnResources reports whether svc may own backend resources: it is type
// LoadBalancer, or still carries Portico's finalizer (a cleanup in progress).
func mayOwnResources(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer || slices.Contains(svc.Finalizers, Finalizer)
}

// liveFingerprints returns the backend's fingerprints of every Service that
// may own resources: type LoadBalancer, or still carrying Portico's
// finalizer, or named by a LoadBalancer record.
func (s *OrphanScanner) liveFingerprints(ctx context.Context, r client.Reader, sc providers.OrphanScanner) (map[string]bool, error) {
	live := map[string]bool{}
	add := func(ns, name string) {
		live[sc.Fingerprint(providers.Key{ClusterID: s.ClusterID, Namespace: ns, Name: name})] = true
	}
	var svcs corev1.ServiceList
	if err := r.List(ctx, &svcs); err != nil {
		return nil, err
	}
	for i := range svcs.Items {
		if svc := &svcs.Items[i]; mayOwnResources(svc) {
			add(svc.Namespace, svc.Name)
		}
	}
	var recs lbv1.LoadBalancerList
	if err := r.List(ctx, &recs); err != nil {
		return nil, err
	}
	for i := range recs.Items {
		add(recs.Items[i].Namespace, recs.Items[i].Name)
	}
	return live, nil
}

func markOf(o providers.Owned) string {
	if o.Service.Name == "" {
		return "this cluster"
	}
	return "Service " + o.Service.String()
}

// publish writes the report ConfigMap and, when orphans are left, a Warning
// Event on it.
func (s *OrphanScanner) publish(ctx context.Context, rep *OrphanReport) error {
	body, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	// The report is read from the API server: the operator caches no
	// ConfigMaps (it may read only its own namespace's).
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: s.Namespace, Name: OrphanReportName}
	err = s.Reader.Get(ctx, key, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: OrphanReportName,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "portico"}},
			Data: map[string]string{OrphanReportKey: string(body)}}
		err = s.Client.Create(ctx, cm)
	case err == nil:
		cm.Data = map[string]string{OrphanReportKey: string(body)}
		err = s.Client.Update(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("writing orphan report %s: %w", key, err)
	}
	left := 0
	var names []string
	for _, o := range rep.Orphans {
		if !o.Deleted {
			left++
			if len(names) < 5 {
				names = append(names, o.Kind+" "+o.ID)
			}
		}
	}
	if s.Recorder == nil {
		return nil
	}
	if left > 0 {
		s.Recorder.Eventf(cm, nil, corev1.EventTypeWarning, ReasonOrphansFound, "Scan",
			"%d backend resources carry cluster %s's ownership marks but belong to no Service (%s); list them with 'kubectl lb orphans'; the operator deletes them only with --delete-orphans",
			left, s.ClusterID, strings.Join(names, ", "))
	}
	if len(rep.Errors) > 0 {
		var msgs []string
		for _, c := range slices.Sorted(maps.Keys(rep.Errors)) {
			msgs = append(msgs, c+": "+rep.Errors[c])
		}
		s.Recorder.Eventf(cm, nil, corev1.EventTypeWarning, ReasonOrphanScanFail, "Scan", "%s", strings.Join(msgs, "; "))
	}
	return nil
}

func (s *OrphanScanner) reportObject(ctx context.Context) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{}
	if err := s.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: OrphanReportName}, cm); err != nil {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: OrphanReportName}}
	}
	return cm
}

// unwrapProvider returns the backend behind the Service controller's
// instrumentation, so optional interfaces are visible.
func unwrapProvider(p providers.Provider) providers.Provider {
	for {
		u, ok := p.(interface{ Unwrap() providers.Provider })
		if !ok {
			return p
		}
		p = u.Unwrap()
	}
}
