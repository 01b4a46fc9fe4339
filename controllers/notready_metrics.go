package controllers

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/model"
)

// NotReadyMetric is the gauge portico_service_not_ready_seconds{namespace,
// service, class, reason}: for every Service whose lb.portico.dev/Ready
// condition is not True, the seconds since that condition last changed. It
// is computed from the cache at each scrape, so a Service that turns Ready or
// goes away leaves no series behind; alert on it being above a few minutes.
// Register it once; SetSource points it at a manager's cache.
type NotReadyMetric struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu      sync.Mutex
	reader  client.Reader
	classes func() model.Classes
}

var _ prometheus.Collector = (*NotReadyMetric)(nil)

// NewNotReadyMetric returns the collector, reporting nothing until SetSource.
func NewNotReadyMetric() *NotReadyMetric {
	return &NotReadyMetric{
		desc: prometheus.NewDesc("portico_service_not_ready_seconds",
			"Seconds since the lb.portico.dev/Ready condition of a Service that is not Ready last changed, by namespace, service, class and the condition's reason.",
			[]string{"namespace", "service", "class", "reason"}, nil),
		now: time.Now,
	}
}

// SetSource makes the metric read Services from r (a manager's cache, whose
// informer store it reads in place) and label them with the class classes
// gives them.
func (m *NotReadyMetric) SetSource(r client.Reader, classes func() model.Classes) {
	m.mu.Lock()
	m.reader, m.classes = r, classes
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *NotReadyMetric) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

// Collect implements prometheus.Collector.
func (m *NotReadyMetric) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	r, classes := m.reader, m.classes
	m.mu.Unlock()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := m.now()
	cls := classes()
	// Read-only, in place (eachCachedService): a copy of every cached
	// Service per scrape was megabytes at 10,000 Services.
	_ = eachCachedService(ctx, r, func(svc *corev1.Service) {
		c := meta.FindStatusCondition(svc.Status.Conditions, ConditionReady)
		if c == nil || c.Status == metav1.ConditionTrue {
			return
		}
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, max(now.Sub(c.LastTransitionTime.Time).Seconds(), 0),
			svc.Namespace, svc.Name, cls.Requested(svc), c.Reason)
	}) // an error: the cache is not synced yet; no value rather than a wrong one
}
