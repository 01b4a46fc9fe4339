//go:build tools

// Package tools pins promtool (github.com/prometheus/prometheus/cmd/promtool),
// which e2e/monitoring runs for the alert rules' unit tests ("promtool test
// rules"). It has a module of its own, like kwok, so that Prometheus's
// dependency graph never moves the versions the control plane is built with.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
