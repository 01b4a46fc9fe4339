// Package monitoring holds the test of Portico's shipped monitoring: the
// alert rules and Grafana dashboard of config/components/monitoring and the
// Helm chart. It is a module of its own so that the Prometheus module the
// test parses PromQL with (github.com/prometheus/prometheus, with a large
// dependency graph) never enters the product's go.mod.
package monitoring
