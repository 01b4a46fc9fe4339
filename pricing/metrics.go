package pricing

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-lb/portico/api/v1alpha1"
)

// HourlyCostMetric is the name of the per-load-balancer cost gauge.
const HourlyCostMetric = "portico_loadbalancer_hourly_cost"

// Metrics exports each load balancer's estimated hourly cost as the gauge
// portico_loadbalancer_hourly_cost{namespace,service,class,region}. It is a
// prometheus.Collector; register it once, e.g. on controller-runtime's
// metrics.Registry:
//
//	m := pricing.NewMetrics()
//	metrics.Registry.MustRegister(m)
type Metrics struct {
	hourly *prometheus.GaugeVec
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics returns an unregistered Metrics.
func NewMetrics() *Metrics {
	return &Metrics{hourly: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: HourlyCostMetric,
		Help: "Estimated hourly cost of a load balancer from list prices, in the currency of its price data (status.cost.currency, USD for the embedded prices).",
	}, []string{"namespace", "service", "class", "region"})}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.hourly.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.hourly.Collect(ch) }

// Set records the cost of the Service's load balancer, replacing any series
// it had under another class or region. A nil cost removes the series: a
// load balancer that cannot be priced has no value rather than a zero.
func (m *Metrics) Set(namespace, service, class string, cost *v1alpha1.CostStatus) error {
	m.Delete(namespace, service)
	if cost == nil {
		return nil
	}
	hourly, err := ParseAmount(cost.Hourly)
	if err != nil {
		return fmt.Errorf("cost of %s/%s: %w", namespace, service, err)
	}
	v, _ := hourly.Float64()
	m.hourly.WithLabelValues(namespace, service, class, cost.Region).Set(v)
	return nil
}

// Delete removes the Service's series, e.g. when its load balancer is gone.
func (m *Metrics) Delete(namespace, service string) {
	m.hourly.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "service": service})
}
