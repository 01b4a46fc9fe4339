package gcpe2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/providers"
	"github.com/portico-lb/portico/providers/gcp"
	"github.com/portico-lb/portico/providers/gcp/e2e"
	"github.com/portico-lb/portico/providers/providertest"
)

// TestE2EGCP is `make e2e-gcp`: Portico's GCP backend against a real project
// (docs/providers/gcp.md, "Checks on a real account"). It creates an external
// load balancer over the given instances on the first port, connects through
// it, adds the second port and connects again, deletes it, and fails if
// anything carrying the run's ownership marks is left. Without the
// environment below it skips, saying what is missing.
func TestE2EGCP(t *testing.T) {
	env := map[string]string{}
	var missing []string
	for _, k := range []string{"PORTICO_E2E_GCP_PROJECT", "PORTICO_E2E_GCP_REGION", "PORTICO_E2E_GCP_NETWORK", "PORTICO_E2E_GCP_INSTANCES"} {
		if env[k] = os.Getenv(k); env[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Skipf("skipping the real-account GCP check: set %s (and Application Default Credentials); see docs/providers/gcp.md", strings.Join(missing, ", "))
	}
	ports := []int32{80, 8080}
	if v := os.Getenv("PORTICO_E2E_GCP_PORTS"); v != "" {
		ports = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 65535 {
				t.Fatalf("PORTICO_E2E_GCP_PORTS %q: want two ports", v)
			}
			ports = append(ports, int32(n))
		}
		if len(ports) != 2 {
			t.Fatalf("PORTICO_E2E_GCP_PORTS %q: want two ports", v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	cluster := "e2e-" + hex.EncodeToString(suffix)
	t.Logf("run cluster ID %s", cluster)

	api, err := gcp.NewClients(ctx)
	if err != nil {
		t.Fatalf("clients (Application Default Credentials): %v", err)
	}
	defer api.Close()
	opts := gcp.Options{ClusterID: cluster, Project: env["PORTICO_E2E_GCP_PROJECT"], Region: env["PORTICO_E2E_GCP_REGION"],
		Network: env["PORTICO_E2E_GCP_NETWORK"], NetworkProject: os.Getenv("PORTICO_E2E_GCP_NETWORK_PROJECT"),
		ExternalInstanceGroupsPrefix: gcp.DefaultExternalInstanceGroupsPrefix}
	p, err := gcp.New(api, opts)
	if err != nil {
		t.Fatal(err)
	}
	k := providers.Key{ClusterID: cluster, Namespace: "e2e", Name: "web"}
	var nodes []string
	instances := strings.Split(env["PORTICO_E2E_GCP_INSTANCES"], ",")
	for _, inst := range instances {
		_, name, _ := strings.Cut(inst, "/")
		nodes = append(nodes, name)
	}
	desired := func(ps ...int32) *providers.LoadBalancer {
		var pp []providers.Port
		for _, port := range ps {
			pp = append(pp, providertest.TCP(port, 30000+port%2000))
		}
		d := providertest.DefaultDesired(k, nodes, pp)
		for i, inst := range instances {
			zone, name, _ := strings.Cut(strings.TrimSpace(inst), "/")
			d.Nodes[i].Name, d.Nodes[i].Zone = name, zone
			d.Nodes[i].ProviderID = "gce://" + opts.Project + "/" + zone + "/" + name
		}
		return d
	}
	where := gcpe2e.Where{Project: opts.Project, Region: opts.Region, NetworkProject: opts.NetworkProject}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if err := retry(ctx, func() error { return p.Delete(ctx, k) }); err != nil {
			t.Errorf("Delete: %v", err)
		}
		rs, err := gcpe2e.List(ctx, where)
		if err != nil {
			t.Errorf("listing leftovers: %v", err)
			return
		}
		if left := gcpe2e.Leftovers(rs, cluster); len(left) > 0 {
			t.Errorf("left behind with the run's marks (delete them by hand): %v", left)
		}
	})

	ensure := func(ps ...int32) *providers.Status {
		var st *providers.Status
		if err := retry(ctx, func() error {
			var err error
			st, err = p.Ensure(ctx, desired(ps...))
			return err
		}); err != nil {
			t.Fatalf("Ensure ports %v: %v", ps, err)
		}
		return st
	}
	st := ensure(ports[0])
	ip := st.Ingress[0].IP.String()
	t.Logf("load balancer at %s", ip)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		obs, err := p.Observe(ctx, k)
		if err == nil && obs.Backends.Healthy > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend became healthy in 10 minutes (last: %+v, %v); do the instances answer /healthz on port 10256?", obs, err)
		}
		time.Sleep(15 * time.Second)
	}
	connect(t, ip, ports[0])
	st = ensure(ports...)
	if len(st.Ports) != 2 {
		t.Errorf("status ports %v, want %v", st.Ports, ports)
	}
	connect(t, ip, ports[1])
}

// retry calls f until it succeeds, returns an error that is not retryable,
// or ctx ends.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		after, ok := providers.IsRetryable(err)
		if err == nil || !ok {
			return err
		}
		if after <= 0 {
			after = 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(after):
		}
	}
}

// connect opens a TCP connection through the load balancer, retrying for
// three minutes while the load balancer programs.
func connect(t *testing.T, ip string, port int32) {
	t.Helper()
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			_ = c.Close()
			t.Logf("connected to %s", addr)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection to %s in 3 minutes: %v", addr, err)
		}
		time.Sleep(5 * time.Second)
	}
}
