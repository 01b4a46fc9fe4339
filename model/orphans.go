package model

import "time"

// OrphanReportName is the ConfigMap, in the namespace Portico runs in, where
// the operator's orphan scan writes what it found and `kubectl lb orphans`
// reads it.
const OrphanReportName = "portico-orphans"

// OrphanReportKey is the ConfigMap key holding the JSON OrphanReport.
const OrphanReportKey = "report.json"

// OrphanReport is what the last orphan scan found.
type OrphanReport struct {
	ClusterID string    `json:"clusterID"`
	ScannedAt time.Time `json:"scannedAt"`
	// Deletion is true when the operator runs with --delete-orphans.
	Deletion bool     `json:"deletion"`
	Orphans  []Orphan `json:"orphans"`
	// Errors holds, per class, why its backend could not be scanned.
	Errors map[string]string `json:"errors,omitempty"`
}

// Orphan is one backend resource that carries this cluster's ownership marks
// but belongs to no Service.
type Orphan struct {
	Class   string `json:"class"`
	Kind    string `json:"kind"`
	ID      string `json:"id"`
	Service string `json:"service,omitempty"`
	// FirstSeen is the scan that first found it; a resource is deleted
	// only when a later scan still finds it.
	FirstSeen time.Time `json:"firstSeen"`
	// Deleted is set when the scan that wrote the report deleted it.
	Deleted bool `json:"deleted,omitempty"`
}
