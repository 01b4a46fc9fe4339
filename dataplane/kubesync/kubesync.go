// Package kubesync keeps the kernel data plane and the health check server
// in step with the cluster: it watches Services, their LoadBalancer records
// (which say the class the operator serves them through, model.Recorded)
// and EndpointSlices through a controller-runtime cache, does one full Sync when the cache has synced,
// then one Dataplane.Update or Delete per changed Service.
package kubesync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/dataplane"
	"github.com/portico-lb/portico/healthcheck"
	"github.com/portico-lb/portico/internal/kubeindex"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// Syncer is a manager.Runnable (use its Start method).
type Syncer struct {
	// Informers and Reader are normally both mgr.GetCache().
	Informers cache.Informers
	Reader    client.Reader
	Dataplane *dataplane.Dataplane
	// Health, if set, serves healthCheckNodePorts (kube-proxy-free nodes).
	Health   *healthcheck.Server
	NodeName string
	// Class selects the Services to program: those whose LoadBalancer
	// record names it (default lb.portico.dev/local).
	Class string
	// RetryAfter is the delay before a full resync after a failure
	// (default 1s).
	RetryAfter time.Duration

	mu      sync.Mutex
	pending map[types.NamespacedName]bool
	kick    chan struct{}
	current map[types.NamespacedName]dataplane.Service
}

// Start runs until ctx ends.
func (s *Syncer) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("dataplane")
	ctx = logr.NewContext(ctx, log)
	if s.Class == "" {
		s.Class = model.LocalClass
	}
	if s.RetryAfter == 0 {
		s.RetryAfter = time.Second
	}
	s.pending = map[types.NamespacedName]bool{}
	s.kick = make(chan struct{}, 1)
	s.current = map[types.NamespacedName]dataplane.Service{}

	for _, obj := range []client.Object{&corev1.Service{}, &lbv1.LoadBalancer{}, &discoveryv1.EndpointSlice{}} {
		inf, err := s.Informers.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    s.enqueue,
			UpdateFunc: func(_, o any) { s.enqueue(o) },
			DeleteFunc: s.enqueue,
		}); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	if !s.Informers.WaitForCacheSync(ctx) {
		return errors.New("cache did not sync")
	}

	needFull := true
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if needFull {
			if err := observe("full", func() error { return s.full(ctx) }); err != nil {
				log.Error(err, "Full sync of the data plane failed; retrying", "after", s.RetryAfter)
				retry.Reset(s.RetryAfter)
			} else {
				needFull = false
			}
		} else if err := observe("incremental", func() error { return s.incremental(ctx) }); err != nil {
			log.Error(err, "Updating the data plane failed; resyncing", "after", s.RetryAfter)
			needFull = true
			retry.Reset(s.RetryAfter)
		}
		observeCounts(s.Dataplane.Counts())
		s.syncHealth(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-retry.C:
		}
	}
}

// enqueue records which Service an event concerns: the Service itself, its
// record, or the one an EndpointSlice belongs to.
func (s *Syncer) enqueue(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	var key types.NamespacedName
	switch o := obj.(type) {
	case *corev1.Service:
		key = types.NamespacedName{Namespace: o.Namespace, Name: o.Name}
	case *lbv1.LoadBalancer:
		key = types.NamespacedName{Namespace: o.Namespace, Name: o.Name}
	case *discoveryv1.EndpointSlice:
		name := o.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			return
		}
		key = types.NamespacedName{Namespace: o.Namespace, Name: name}
	default:
		return
	}
	s.mu.Lock()
	s.pending[key] = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// build reads one Service and its slices from the cache; ok is false when
// the Service is gone or not served.
func (s *Syncer) build(ctx context.Context, key types.NamespacedName) (dataplane.Service, bool, error) {
	var svc corev1.Service
	if err := s.Reader.Get(ctx, key, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return dataplane.Service{}, false, nil
		}
		return dataplane.Service{}, false, fmt.Errorf("reading service %s: %w", key, err)
	}
	var rec lbv1.LoadBalancer
	if err := s.Reader.Get(ctx, key, &rec); err != nil {
		if apierrors.IsNotFound(err) {
			return dataplane.Service{}, false, nil
		}
		return dataplane.Service{}, false, fmt.Errorf("reading LoadBalancer record %s: %w", key, err)
	}
	if model.Recorded(&svc, &rec) != s.Class {
		return dataplane.Service{}, false, nil
	}
	list, err := kubeindex.EndpointSlicesOf(ctx, s.Reader, key)
	if err != nil {
		return dataplane.Service{}, false, fmt.Errorf("listing endpoint slices of %s: %w", key, err)
	}
	slices := make([]*discoveryv1.EndpointSlice, len(list))
	for i := range list {
		slices[i] = &list[i]
	}
	out, err := dataplane.FromKubernetes(&svc, slices)
	if err != nil {
		return dataplane.Service{}, false, err
	}
	return out, true, nil
}

func (s *Syncer) full(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	s.mu.Lock()
	s.pending = map[types.NamespacedName]bool{}
	s.mu.Unlock()
	var list corev1.ServiceList
	if err := s.Reader.List(ctx, &list); err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	current := map[types.NamespacedName]dataplane.Service{}
	var svcs []dataplane.Service
	for i := range list.Items {
		key := types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}
		svc, ok, err := s.build(ctx, key)
		if err != nil {
			var ce *providers.ConfigError
			if errors.As(err, &ce) {
				log.Info("Not programming service", "service", key.String(), "reason", ce.Reason, "message", ce.Message)
				continue
			}
			return err
		}
		if ok {
			current[key] = svc
			svcs = append(svcs, svc)
		}
	}
	if err := s.Dataplane.Sync(ctx, svcs); err != nil {
		return err
	}
	s.current = current
	log.V(1).Info("Synced data plane", "services", len(svcs))
	return nil
}

func (s *Syncer) incremental(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx)
	s.mu.Lock()
	keys := s.pending
	s.pending = map[types.NamespacedName]bool{}
	s.mu.Unlock()
	var errs []error
	var updates []dataplane.Service
	var deletes []dataplane.ServiceKey
	for key := range keys {
		svc, ok, err := s.build(ctx, key)
		var ce *providers.ConfigError
		switch {
		case errors.As(err, &ce):
			log.Info("Not programming service", "service", key.String(), "reason", ce.Reason, "message", ce.Message)
			ok = false
		case err != nil:
			errs = append(errs, err)
			continue
		}
		if !ok {
			deletes = append(deletes, dataplane.ServiceKey{Namespace: key.Namespace, Name: key.Name})
			continue
		}
		updates = append(updates, svc)
	}
	// Everything that changed since the last pass goes to the kernel in one
	// transaction (Dataplane.Apply).
	if len(updates)+len(deletes) > 0 {
		if err := s.Dataplane.Apply(ctx, updates, deletes); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	for _, svc := range updates {
		s.current[types.NamespacedName{Namespace: svc.Key.Namespace, Name: svc.Key.Name}] = svc
	}
	for _, key := range deletes {
		delete(s.current, types.NamespacedName{Namespace: key.Namespace, Name: key.Name})
	}
	return errors.Join(errs...)
}

func (s *Syncer) syncHealth(ctx context.Context) {
	if s.Health == nil {
		return
	}
	svcs := make([]dataplane.Service, 0, len(s.current))
	for _, svc := range s.current {
		svcs = append(svcs, svc)
	}
	if err := s.Health.Sync(ctx, healthcheck.FromDataplane(svcs, s.NodeName)); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "Serving health check ports")
	}
}
