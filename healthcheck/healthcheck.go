// Package healthcheck serves the healthCheckNodePort of Services with
// externalTrafficPolicy Local on nodes without kube-proxy, with responses
// that match kube-proxy's (pkg/proxy/healthcheck): 200 when the node has
// ready local endpoints and 503 otherwise, the same JSON body and headers,
// on any path. Cloud load balancers probe it to send traffic only to nodes
// with endpoints.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/portico-lb/portico/dataplane"
)

// Service is one health-checked Service on this node.
type Service struct {
	Namespace string
	Name      string
	// NodePort is spec.healthCheckNodePort.
	NodePort uint16
	// LocalEndpoints is the number of ready endpoints on this node.
	LocalEndpoints int
}

// FromDataplane picks the Services that have a health check (policy Local
// with a healthCheckNodePort) and counts their ready endpoints on nodeName.
func FromDataplane(svcs []dataplane.Service, nodeName string) []Service {
	var out []Service
	for i := range svcs {
		s := &svcs[i]
		if s.TrafficPolicy != dataplane.Local || s.HealthCheckNodePort == 0 {
			continue
		}
		out = append(out, Service{Namespace: s.Key.Namespace, Name: s.Key.Name, NodePort: s.HealthCheckNodePort, LocalEndpoints: s.LocalReadyEndpoints(nodeName)})
	}
	return out
}

// Options configure a Server.
type Options struct {
	// BindAddresses are the node addresses to listen on; empty means all
	// addresses (as kube-proxy without --nodeport-addresses).
	BindAddresses []netip.Addr
	// Healthy reports whether the forwarder itself is healthy (the
	// serviceProxyHealthy field); nil means always.
	Healthy func() bool
	// Listen opens listeners; nil means net.Listen.
	Listen func(network, address string) (net.Listener, error)
}

// Server runs one HTTP listener (per bind address) for every
// healthCheckNodePort it is given.
type Server struct {
	opts Options

	mu    sync.Mutex
	ports map[uint16]*port
}

type port struct {
	servers []*http.Server
	healthy func() bool

	mu  sync.RWMutex
	svc Service
}

// NewServer returns a Server with no listeners.
func NewServer(opts Options) *Server {
	if opts.Listen == nil {
		opts.Listen = net.Listen
	}
	return &Server{opts: opts, ports: map[uint16]*port{}}
}

// Sync makes the listeners match svcs: new ports are opened, gone ports
// closed, and counts of kept ports updated in place. A port that cannot be
// opened (in use) is reported in the error; the others are served. When two
// Services claim one port, the first by namespace/name is served.
func (s *Server) Sync(ctx context.Context, svcs []Service) error {
	log := logr.FromContextOrDiscard(ctx)
	want := map[uint16]Service{}
	sorted := slices.Clone(svcs)
	slices.SortFunc(sorted, func(a, b Service) int {
		if a.Namespace != b.Namespace {
			if a.Namespace < b.Namespace {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	for _, svc := range sorted {
		if svc.NodePort == 0 {
			continue
		}
		if prev, ok := want[svc.NodePort]; ok {
			log.Info("Two services claim one health check port; serving the first", "port", svc.NodePort, "service", prev.Namespace+"/"+prev.Name, "ignored", svc.Namespace+"/"+svc.Name)
			continue
		}
		want[svc.NodePort] = svc
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for n, p := range s.ports {
		if _, ok := want[n]; !ok {
			log.V(1).Info("Closing health check port", "port", n)
			p.close()
			delete(s.ports, n)
		}
	}
	for n, svc := range want {
		if p, ok := s.ports[n]; ok {
			p.mu.Lock()
			p.svc = svc
			p.mu.Unlock()
			continue
		}
		p, err := s.open(n, svc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		log.V(1).Info("Serving health check port", "port", n, "service", svc.Namespace+"/"+svc.Name)
		s.ports[n] = p
	}
	return errors.Join(errs...)
}

func (s *Server) open(n uint16, svc Service) (*port, error) {
	p := &port{svc: svc, healthy: s.opts.Healthy}
	hosts := []string{""}
	if len(s.opts.BindAddresses) > 0 {
		hosts = nil
		for _, a := range s.opts.BindAddresses {
			hosts = append(hosts, a.String())
		}
	}
	var lns []net.Listener
	for _, h := range hosts {
		ln, err := s.opts.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(int(n))))
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, fmt.Errorf("opening health check port %d for %s/%s: %w", n, svc.Namespace, svc.Name, err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
		p.servers = append(p.servers, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	return p, nil
}

func (p *port) close() {
	for _, srv := range p.servers {
		_ = srv.Close()
	}
}

// Close stops every listener.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, p := range s.ports {
		p.close()
		delete(s.ports, n)
	}
	return nil
}

// ServeHTTP answers as kube-proxy's health check server does.
func (p *port) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	p.mu.RLock()
	svc := p.svc
	p.mu.RUnlock()
	healthy := p.healthy == nil || p.healthy()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(svc.LocalEndpoints))
	if svc.LocalEndpoints != 0 && healthy {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = fmt.Fprint(w, Body(svc.Namespace, svc.Name, svc.LocalEndpoints, healthy))
}

// Body is the response body, byte for byte kube-proxy's: tab-indented,
// no trailing newline.
func Body(namespace, name string, localEndpoints int, healthy bool) string {
	return fmt.Sprintf("{\n\t\"service\": {\n\t\t\"namespace\": %q,\n\t\t\"name\": %q\n\t},\n\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": %v\n}",
		namespace, name, localEndpoints, healthy)
}
