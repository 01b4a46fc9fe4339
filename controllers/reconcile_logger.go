package controllers

import (
	"slices"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// reconcileLogConstructor is the Service controller's LogConstructor: the
// same keys as controller-runtime's builder gives a reconcile's logger
// ("controller", "controllerGroup", "controllerKind", then "Service",
// "namespace", "name"), but the per-request ones, and every value added
// during the reconcile (controller-runtime's "reconcileID" first), reach
// the underlying logger only when a line is written.
//
// controller-runtime builds this logger for every reconcile. With zap, each
// WithValues clones the JSON encoder (a pooled buffer of 1 kB) and encodes
// the values at once: about 7 kB per reconcile, almost never written, as
// almost no reconcile logs at the enabled level. At 10,000 Services a node
// change reconciles each of them, and that allocation rate raised the
// operator's peak heap.
func reconcileLogConstructor(base logr.Logger, controllerName string) func(*reconcile.Request) logr.Logger {
	base = base.WithValues("controller", controllerName, "controllerGroup", "", "controllerKind", "Service")
	deferred := deferValues(base)
	return func(req *reconcile.Request) logr.Logger {
		if req == nil {
			return base
		}
		return deferred.WithValues("Service", klog.KRef(req.Namespace, req.Name),
			"namespace", req.Namespace, "name", req.Name)
	}
}

// deferValues returns log with a sink that keeps what WithValues adds and
// hands it to log's sink only for a line that is written: an Info at an
// enabled level, or an Error. A written line carries the same keys, in the
// same order, as with log itself. Values are rendered when the line is
// written, not when they are added: add values, not pointers to objects
// that change meanwhile.
func deferValues(log logr.Logger) logr.Logger {
	sink := log.GetSink()
	if sink == nil {
		return log
	}
	// deferredSink.Info and Error are one more frame between the caller
	// and sink.
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	return log.WithSink(&deferredSink{sink: sink})
}

// deferredSink is the logr.LogSink of deferValues.
type deferredSink struct {
	sink   logr.LogSink
	values *deferredValues
}

// deferredValues are the arguments of one WithValues call, after those of
// the calls before it (prev). Each call is handed on separately, as it was
// made: a sink pairs keys and values per call.
type deferredValues struct {
	prev *deferredValues
	kv   []any
}

var (
	_ logr.LogSink          = (*deferredSink)(nil)
	_ logr.CallDepthLogSink = (*deferredSink)(nil)
)

// Init does nothing: the underlying sink was initialised by its own
// logger, and deferValues accounts for the frame this sink adds.
func (s *deferredSink) Init(logr.RuntimeInfo) {}

func (s *deferredSink) Enabled(level int) bool { return s.sink.Enabled(level) }

// Info is called by logr only at an enabled level.
func (s *deferredSink) Info(level int, msg string, kv ...any) {
	s.withValues().Info(level, msg, kv...)
}

func (s *deferredSink) Error(err error, msg string, kv ...any) {
	s.withValues().Error(err, msg, kv...)
}

func (s *deferredSink) WithValues(kv ...any) logr.LogSink {
	if len(kv) == 0 {
		return s
	}
	// Cloned: the caller may reuse its slice.
	return &deferredSink{sink: s.sink, values: &deferredValues{prev: s.values, kv: slices.Clone(kv)}}
}

func (s *deferredSink) WithName(name string) logr.LogSink {
	return &deferredSink{sink: s.sink.WithName(name), values: s.values}
}

func (s *deferredSink) WithCallDepth(depth int) logr.LogSink {
	cd, ok := s.sink.(logr.CallDepthLogSink)
	if !ok {
		return s
	}
	return &deferredSink{sink: cd.WithCallDepth(depth), values: s.values}
}

// withValues returns the underlying sink with the deferred values added, in
// the order they were added.
func (s *deferredSink) withValues() logr.LogSink {
	return s.values.addTo(s.sink)
}

func (v *deferredValues) addTo(sink logr.LogSink) logr.LogSink {
	if v == nil {
		return sink
	}
	return v.prev.addTo(sink).WithValues(v.kv...)
}
