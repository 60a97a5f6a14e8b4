package admission

import (
	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// RequestLogger is the LogConstructor of nsprov's webhooks
// (admission.Webhook.LogConstructor). Its logger carries the same values as
// controller-runtime's DefaultLogConstructor (object, namespace, name,
// resource, user, requestID), but adds them to the base logger only when a
// line is written: controller-runtime builds a logger for every request
// (twice), and with a structured logger such as zap, adding the values
// eagerly costs allocations and encoding on every request although almost
// none writes a line.
func RequestLogger(base logr.Logger, req *admission.Request) logr.Logger {
	sink := base.GetSink()
	if req == nil || sink == nil {
		return base
	}
	return base.WithSink(&lazySink{base: sink, req: req})
}

// lazySink is a LogSink that adds a request's values, and any values given
// to WithValues, to its base sink only when it writes a line.
type lazySink struct {
	base logr.LogSink
	req  *admission.Request
	// values are added after the request's.
	values []any
	// depth is the call depth asked for with WithCallDepth.
	depth int
}

var (
	_ logr.LogSink          = (*lazySink)(nil)
	_ logr.CallDepthLogSink = (*lazySink)(nil)
)

// Init implements logr.LogSink. The base sink is initialised already.
func (s *lazySink) Init(logr.RuntimeInfo) {}

// Enabled implements logr.LogSink.
func (s *lazySink) Enabled(level int) bool { return s.base.Enabled(level) }

// Info implements logr.LogSink.
func (s *lazySink) Info(level int, msg string, kv ...any) { s.sink().Info(level, msg, kv...) }

// Error implements logr.LogSink.
func (s *lazySink) Error(err error, msg string, kv ...any) { s.sink().Error(err, msg, kv...) }

// WithValues implements logr.LogSink.
func (s *lazySink) WithValues(kv ...any) logr.LogSink {
	c := *s
	c.values = append(append(make([]any, 0, len(s.values)+len(kv)), s.values...), kv...)
	return &c
}

// WithName implements logr.LogSink.
func (s *lazySink) WithName(name string) logr.LogSink {
	c := *s
	c.base = s.base.WithName(name)
	return &c
}

// WithCallDepth implements logr.CallDepthLogSink.
func (s *lazySink) WithCallDepth(depth int) logr.LogSink {
	c := *s
	c.depth += depth
	return &c
}

// sink is the base sink with the values added, one call deeper (this
// sink's method) than asked for, so that the caller a line reports is the
// one that logged.
func (s *lazySink) sink() logr.LogSink {
	req := s.req
	b := s.base.WithValues(
		"object", klog.KRef(req.Namespace, req.Name),
		"namespace", req.Namespace, "name", req.Name,
		"resource", req.Resource, "user", req.UserInfo.Username,
		"requestID", req.UID,
	)
	if len(s.values) > 0 {
		b = b.WithValues(s.values...)
	}
	if cd, ok := b.(logr.CallDepthLogSink); ok {
		b = cd.WithCallDepth(s.depth + 1)
	}
	return b
}
