package pricing

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

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
// It is built for thousands of load balancers: each series holds its value
// and its service label, and shares the namespace, class and region labels
// with the other series of the same value; a scrape sends the series
// themselves. A GaugeVec child per Service, with its own label pairs, held
// about 650 bytes (6.5 MB at 10,000 Services), replacing a Service's series
// searched every series, and samples made at each scrape
// (prometheus.NewConstMetric) allocated as much again per scrape.
type Metrics struct {
	desc *prometheus.Desc

	mu     sync.RWMutex
	series map[costKey]*costSeries
	// shared holds the label pairs of the namespace, class and region
	// values in use, with the number of series using each.
	shared map[labelValue]*sharedLabel
}

type costKey struct{ namespace, service string }

type labelValue struct{ name, value string }

type sharedLabel struct {
	pair *dto.LabelPair
	refs int
}

// costSeries is one load balancer's sample, written as it is at a scrape;
// read-only once made. It is one allocation: its own label pair and value
// live in it.
type costSeries struct {
	desc *prometheus.Desc
	// labels are sorted by name (class, namespace, region, service), as
	// the registry wants them; the last is &service.
	labels  [4]*dto.LabelPair
	service dto.LabelPair
	name    string
	hourly  float64
}

// newCostSeries makes the series of service with the shared class,
// namespace and region label pairs.
func newCostSeries(desc *prometheus.Desc, class, namespace, region *dto.LabelPair, service string, hourly float64) *costSeries {
	s := &costSeries{desc: desc, name: service, hourly: hourly}
	s.service.Name, s.service.Value = &serviceLabelName, &s.name
	s.labels = [4]*dto.LabelPair{class, namespace, region, &s.service}
	return s
}

var serviceLabelName = labelService

var _ prometheus.Collector = (*Metrics)(nil)

// The label names, in the sorted order of costSeries.labels.
const (
	labelClass     = "class"
	labelNamespace = "namespace"
	labelRegion    = "region"
	labelService   = "service"
)

// NewMetrics returns an unregistered Metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		desc: prometheus.NewDesc(HourlyCostMetric,
			"Estimated hourly cost of a load balancer from list prices, in the currency of its price data (status.cost.currency, USD for the embedded prices).",
			[]string{labelNamespace, labelService, labelClass, labelRegion}, nil),
		series: map[costKey]*costSeries{},
		shared: map[labelValue]*sharedLabel{},
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.series {
		ch <- s
	}
}

// Desc implements prometheus.Metric.
func (s *costSeries) Desc() *prometheus.Desc { return s.desc }

// Write implements prometheus.Metric.
func (s *costSeries) Write(out *dto.Metric) error {
	out.Label = s.labels[:]
	out.Gauge = &dto.Gauge{Value: &s.hourly}
	return nil
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
	key := costKey{namespace, service}
	if s, ok := m.series[key]; ok && s.labels[0].GetValue() == class && s.labels[2].GetValue() == cost.Region {
		// A scrape may be writing the old series: replace it, never
		// change it.
		m.series[key] = newCostSeries(m.desc, s.labels[0], s.labels[1], s.labels[2], service, v)
		return nil
	}
	m.deleteLocked(key)
	m.series[key] = newCostSeries(m.desc, m.acquire(labelClass, class), m.acquire(labelNamespace, namespace),
		m.acquire(labelRegion, cost.Region), service, v)
	return nil
}

// Delete removes the Service's series, e.g. when its load balancer is gone.
func (m *Metrics) Delete(namespace, service string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleteLocked(costKey{namespace, service})
}

func (m *Metrics) deleteLocked(key costKey) {
	s, ok := m.series[key]
	if !ok {
		return
	}
	delete(m.series, key)
	for _, l := range s.labels[:3] {
		m.release(l)
	}
}

// acquire returns the shared label pair name=value.
func (m *Metrics) acquire(name, value string) *dto.LabelPair {
	k := labelValue{name, value}
	sl, ok := m.shared[k]
	if !ok {
		sl = &sharedLabel{pair: &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}}
		m.shared[k] = sl
	}
	sl.refs++
	return sl.pair
}

// release drops one use of a shared label pair; the last use removes it.
func (m *Metrics) release(p *dto.LabelPair) {
	k := labelValue{p.GetName(), p.GetValue()}
	if sl, ok := m.shared[k]; ok {
		if sl.refs--; sl.refs <= 0 {
			delete(m.shared, k)
		}
	}
}
