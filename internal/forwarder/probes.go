package forwarder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// probes serves /metrics and the health probes. /healthz answers while the
// process runs; /readyz fails, naming the reason, while the forwarder cannot
// take part (heartbeat socket closed, interface down or missing, no Lease).
// A link flap makes the pod not ready, never restarts it.
type probes struct {
	checks map[string]func() error
}

func (p *probes) ready() error {
	names := make([]string, 0, len(p.checks))
	for n := range p.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		if err := p.checks[n](); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

func (p *probes) serve(metricsAddr, probeAddr string) Component {
	return func(ctx context.Context) error {
		log := logr.FromContextOrDiscard(ctx)
		metrics := http.NewServeMux()
		metrics.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{}))
		health := http.NewServeMux()
		health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := p.ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(err.Error() + "\n"))
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		var servers []*http.Server
		for _, s := range []struct {
			addr string
			h    http.Handler
		}{{metricsAddr, metrics}, {probeAddr, health}} {
			if s.addr == "" || s.addr == "0" {
				continue
			}
			ln, err := net.Listen("tcp", s.addr)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", s.addr, err)
			}
			srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 5 * time.Second}
			servers = append(servers, srv)
			go func() { _ = srv.Serve(ln) }()
			log.Info("Serving", "address", ln.Addr().String())
		}
		<-ctx.Done()
		for _, srv := range servers {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		}
		return nil
	}
}
