package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-lb/portico/providers"
)

// Metrics are Portico's Prometheus metrics (prefix portico_). Register them
// on controller-runtime's metrics.Registry so they are served with the
// manager's metrics.
type Metrics struct {
	ReconcileDuration *prometheus.HistogramVec
	TimeToAddress     prometheus.Histogram
	ProviderCalls     *prometheus.CounterVec
	ProviderLatency   *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ReconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_reconcile_duration_seconds",
			Help:    "Time to reconcile one Service, by result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"result"}),
		TimeToAddress: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portico_service_time_to_address_seconds",
			Help:    "Time from a Service's creation to its first status.loadBalancer.ingress address.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
		ProviderCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portico_provider_calls_total",
			Help: "Provider calls by class, operation and result (ok, retry, config_error, error).",
		}, []string{"class", "operation", "result"}),
		ProviderLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portico_provider_call_duration_seconds",
			Help:    "Provider call latency by class and operation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}, []string{"class", "operation"}),
	}
	if reg != nil {
		reg.MustRegister(m.ReconcileDuration, m.TimeToAddress, m.ProviderCalls, m.ProviderLatency)
	}
	return m
}

// instrumented wraps a provider with call metrics and a deadline per call.
type instrumented struct {
	providers.Provider
	m       *Metrics
	timeout time.Duration
}

var _ providers.Provider = instrumented{}

// Unwrap returns the backend, whose optional interfaces (OrphanScanner,
// PodTargeter) the wrapper hides.
func (i instrumented) Unwrap() providers.Provider { return i.Provider }

func (i instrumented) observe(op string, start time.Time, err error) {
	class := i.Class()
	i.m.ProviderLatency.WithLabelValues(class, op).Observe(time.Since(start).Seconds())
	i.m.ProviderCalls.WithLabelValues(class, op, resultOf(err)).Inc()
}

func (i instrumented) Ensure(ctx context.Context, d *providers.LoadBalancer) (*providers.Status, error) {
	start := time.Now()
	ctx, cancel := i.bound(ctx)
	defer cancel()
	st, err := i.Provider.Ensure(ctx, d)
	err = i.expired(ctx, "Ensure", err)
	i.observe("ensure", start, err)
	return st, err
}

// bound gives a call its deadline.
func (i instrumented) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if i.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, i.timeout, errCallTimeout)
}

var errCallTimeout = errors.New("backend call timed out")

// expired turns a call that ran out of its own deadline into a retryable
// error that says so; the reconciler backs off and tries again.
func (i instrumented) expired(ctx context.Context, op string, err error) error {
	if err == nil || !errors.Is(context.Cause(ctx), errCallTimeout) {
		return err
	}
	return providers.Retry(fmt.Errorf("%s %s did not finish within %s: %w", i.Class(), op, i.timeout, err), 0)
}

func (i instrumented) Observe(ctx context.Context, key providers.Key) (*providers.Status, error) {
	start := time.Now()
	ctx, cancel := i.bound(ctx)
	defer cancel()
	st, err := i.Provider.Observe(ctx, key)
	err = i.expired(ctx, "Observe", err)
	if errors.Is(err, providers.ErrNotFound) {
		i.observe("observe", start, nil)
	} else {
		i.observe("observe", start, err)
	}
	return st, err
}

func (i instrumented) Delete(ctx context.Context, key providers.Key) error {
	start := time.Now()
	ctx, cancel := i.bound(ctx)
	defer cancel()
	err := i.Provider.Delete(ctx, key)
	err = i.expired(ctx, "Delete", err)
	i.observe("delete", start, err)
	return err
}

// TargetsPods forwards the optional capability.
func (i instrumented) TargetsPods() bool {
	pt, ok := i.Provider.(providers.PodTargeter)
	return ok && pt.TargetsPods()
}

// HealthChecksLocal forwards the optional capability.
func (i instrumented) HealthChecksLocal() bool {
	lhc, ok := i.Provider.(providers.LocalHealthChecker)
	return ok && lhc.HealthChecksLocal()
}

func resultOf(err error) string {
	var ce *providers.ConfigError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ce):
		return "config_error"
	}
	if _, ok := providers.IsRetryable(err); ok {
		return "retry"
	}
	return "error"
}
