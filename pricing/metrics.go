package pricing

import (
	"fmt"
	"sync"

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
//
// It keeps one small value per load balancer and makes the samples at each
// scrape: a GaugeVec child per Service, with its label pairs, held about 650
// bytes each (6.5 MB at 10,000 Services), and replacing a Service's series
// searched every series.
type Metrics struct {
	desc *prometheus.Desc

	mu    sync.RWMutex
	costs map[costKey]costValue
}

type costKey struct{ namespace, service string }

type costValue struct {
	class, region string
	hourly        float64
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics returns an unregistered Metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		desc: prometheus.NewDesc(HourlyCostMetric,
			"Estimated hourly cost of a load balancer from list prices, in the currency of its price data (status.cost.currency, USD for the embedded prices).",
			[]string{"namespace", "service", "class", "region"}, nil),
		costs: map[costKey]costValue{},
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, v := range m.costs {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, v.hourly, k.namespace, k.service, v.class, v.region)
	}
}

// Set records the cost of the Service's load balancer, replacing any series
// it had under another class or region. A nil cost removes the series: a
// load balancer that cannot be priced has no value rather than a zero.
func (m *Metrics) Set(namespace, service, class string, cost *v1alpha1.CostStatus) error {
	if cost == nil {
		m.Delete(namespace, service)
		return nil
	}
	hourly, err := ParseAmount(cost.Hourly)
	if err != nil {
		m.Delete(namespace, service)
		return fmt.Errorf("cost of %s/%s: %w", namespace, service, err)
	}
	v, _ := hourly.Float64()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.costs[costKey{namespace, service}] = costValue{class: class, region: cost.Region, hourly: v}
	return nil
}

// Delete removes the Service's series, e.g. when its load balancer is gone.
func (m *Metrics) Delete(namespace, service string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.costs, costKey{namespace, service})
}
