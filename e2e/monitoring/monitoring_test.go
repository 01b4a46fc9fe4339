package monitoring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/internal/testenv"
)

// targetLabels are the labels Prometheus and the shipped ServiceMonitor and
// PodMonitor add to every scraped series; an expression may match on them
// although no exporter exposes them.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "endpoint", "service", "node"}

// synthesized are series Prometheus makes itself for every target.
var synthesized = map[string][]string{"up": nil}

// TestShippedMonitoring checks the alert rules and the dashboard that ship in
// config/components/monitoring and in the Helm chart: both installs ship the
// same, every rule is valid for Prometheus, and every expression parses and
// names only metrics (and labels, and label values where they are fixed)
// that a running portico-operator and portico-forwarder actually export.
func TestShippedMonitoring(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t)
	kust := render(t, exec.Command(filepath.Join(env.BinDir, "kubectl"), "kustomize", "testdata/kustomize"))
	helm := exec.Command(filepath.Join(env.BinDir, "helm"), "template", "portico", filepath.Join(root, "config/helm/portico"),
		"--namespace", "portico-system", "--set", "monitoring.enabled=true")
	helm.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	chart := render(t, helm)

	kGroups, kDash := shipped(t, "kustomize", kust)
	hGroups, hDash := shipped(t, "helm", chart)
	monitorsSelect(t, "kustomize", kust)
	monitorsSelect(t, "helm", chart)
	if !bytes.Equal(kGroups, hGroups) {
		t.Errorf("the chart's alert rules differ from the kustomize component's:\nhelm:\n%s\nkustomize:\n%s", hGroups, kGroups)
	}
	if !jsonEqual(t, kDash, hDash) {
		t.Error("the chart's dashboard differs from the kustomize component's")
	}

	exported := scrapeBoth(t, env, root)
	p := parser.NewParser(parser.Options{})

	groups, errs := rulefmt.Parse(kGroups, false, model.UTF8Validation, p, nil)
	for _, err := range errs {
		t.Errorf("rules: %v", err)
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if r.Alert != "" {
				alerts++
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("alert %s lacks a severity, summary or description", name)
				}
			}
			checkExpr(t, p, "rule "+name, r.Expr, exported)
		}
	}
	if alerts < 10 {
		t.Errorf("%d alerts parsed, want the full set", alerts)
	}

	queries := dashboardQueries(t, kDash)
	if len(queries) < 20 {
		t.Errorf("%d dashboard queries found, want every panel's", len(queries))
	}
	for where, q := range queries {
		checkExpr(t, p, where, q, exported)
	}
}

func render(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return out
}

// shipped returns the PrometheusRule's spec (its groups, as YAML) and the
// dashboard's JSON from a rendered install, and checks the monitors.
func shipped(t *testing.T, where string, rendered []byte) (groups, dashboard []byte) {
	t.Helper()
	kinds := map[string]bool{}
	for _, doc := range strings.Split(string(rendered), "\n---") {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec json.RawMessage   `json:"spec"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		kinds[o.Kind] = true
		switch {
		case o.Kind == "PrometheusRule":
			var err error
			if groups, err = yaml.JSONToYAML(o.Spec); err != nil {
				t.Fatal(err)
			}
		case o.Kind == "ConfigMap" && o.Metadata.Labels["grafana_dashboard"] == "1":
			dashboard = []byte(o.Data["portico.json"])
		}
	}
	for _, k := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "ClusterRoleBinding"} {
		if !kinds[k] {
			t.Errorf("%s renders no %s", where, k)
		}
	}
	if groups == nil || dashboard == nil {
		t.Fatalf("%s renders no PrometheusRule or no dashboard ConfigMap", where)
	}
	return groups, dashboard
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// dashboardQueries returns every PromQL query of the dashboard, by panel,
// with Grafana's variables replaced by values PromQL accepts.
func dashboardQueries(t *testing.T, dash []byte) map[string]string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$node", ".*", "${node}", ".*")
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %q query %d", p.Title, i)] = vars.Replace(tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_]+)\)$`)
	for _, v := range d.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue
		}
		s, _ := q["query"].(string)
		if m := labelValues.FindStringSubmatch(s); m != nil {
			// label_values(selector, label): the label must exist on it.
			out["variable "+v.Name] = fmt.Sprintf("count by (%s) (%s{%s!=\"\"})", m[2], m[1], m[2])
		} else if s != "" {
			out["variable "+v.Name] = s
		}
	}
	return out
}

// family is what a scrape showed of one metric family.
type family struct {
	typ    string
	labels map[string]map[string]bool // label -> values seen
}

// checkExpr parses expr and checks each selector against exported.
func checkExpr(t *testing.T, p parser.Parser, where, expr string, exported map[string]*family) {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return
	}
	selectors := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		f := lookup(exported, name)
		if f == nil {
			if _, ok := synthesized[name]; !ok {
				t.Errorf("%s: metric %q is exported by neither the operator nor the forwarder", where, name)
			}
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				continue
			}
			values, ok := f.labels[m.Name]
			if !ok {
				if !slices.Contains(targetLabels, m.Name) {
					t.Errorf("%s: %s has no label %q (it has %v)", where, name, m.Name, keys(f.labels))
				}
				continue
			}
			// Equality names a value the exporter must show; a regular
			// expression may name values that appear only on failure
			// (result="error"), which a healthy scrape cannot confirm.
			if m.Type == labels.MatchEqual && m.Value != "" && !values[m.Value] {
				t.Errorf("%s: %s{%s=%q}: that value never appears (seen %v)", where, name, m.Name, m.Value, keys(values))
			}
		}
		return nil
	})
	if selectors == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
}

// lookup finds name among the exported families, a histogram's _bucket,
// _sum and _count series included.
func lookup(exported map[string]*family, name string) *family {
	if f, ok := exported[name]; ok {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := exported[base]; ok && (f.typ == "histogram" || f.typ == "summary") {
				if suffix == "_bucket" {
					f = &family{typ: f.typ, labels: clone(f.labels)}
					f.labels["le"] = map[string]bool{}
				}
				return f
			}
		}
	}
	return nil
}

func clone(m map[string]map[string]bool) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// scrapeBoth runs the real operator (local and memory backends, an IPPool,
// a Service that gets an address and one that cannot) and a forwarder in
// static mode, and returns the metric families both export.
func scrapeBoth(t *testing.T, env *testenv.Env, root string) map[string]*family {
	t.Helper()
	operator, forwarder := os.Getenv("PORTICO_OPERATOR_BIN"), os.Getenv("PORTICO_FORWARDER_BIN")
	if operator == "" || forwarder == "" {
		dir := t.TempDir()
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/portico-operator", "./cmd/portico-forwarder")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building the binaries: %v\n%s", err, out)
		}
		operator, forwarder = filepath.Join(dir, "portico-operator"), filepath.Join(dir, "portico-forwarder")
	}
	ctx := context.Background()
	pool := &lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "mon"}, Spec: lbv1.IPPoolSpec{Addresses: []string{"192.0.2.0/29"}}}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	svc := func(name string, ann map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: ann},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("lb.portico.dev/local"),
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	}
	for _, s := range []*corev1.Service{svc("served", nil), svc("pending", map[string]string{"lb.portico.dev/ip": "198.51.100.7"})} {
		if err := env.Client.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	opAddr := freeTCP(t)
	testenv.StartChecked(t, "portico-operator", exec.Command(operator, "--kubeconfig", env.Kubeconfig, "--providers", "local,memory",
		"--metrics-bind-address", opAddr, "--metrics-secure=false", "--health-probe-bind-address", "0", "--zap-log-level", "error"),
		testenv.ProcessOptions{CleanExit: true})
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("monitoring-test-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fwAddr := freeTCP(t)
	testenv.StartChecked(t, "portico-forwarder", exec.Command(forwarder, "--node-name", "m1", "--interface", "ptcmon-none0",
		"--static-address", "192.0.2.1", "--peer", "m2=127.0.0.2", "--heartbeat-address", "127.0.0.1", "--heartbeat-port", freeUDPPort(t),
		"--heartbeat-key-file", keyFile, "--no-dataplane", "--metrics-bind-address", fwAddr, "--health-probe-bind-address", freeTCP(t)),
		testenv.ProcessOptions{CleanExit: true})

	exported := map[string]*family{}
	// The operator's families appear as it works: wait for the pool's
	// gauge, a provider call and the pending Service's not-ready age.
	testenv.Eventually(t, 60*time.Second, func() error {
		op, err := scrape("http://" + opAddr + "/metrics")
		if err != nil {
			return err
		}
		fw, err := scrape("http://" + fwAddr + "/metrics")
		if err != nil {
			return err
		}
		for _, want := range []string{"portico_ippool_addresses", "portico_provider_calls_total", "portico_service_not_ready_seconds",
			"portico_reconcile_duration_seconds", "controller_runtime_reconcile_errors_total"} {
			if op[want] == nil {
				return fmt.Errorf("the operator does not export %s yet", want)
			}
		}
		if fw["portico_forwarder_quorum"] == nil {
			return fmt.Errorf("the forwarder does not export portico_forwarder_quorum")
		}
		if f := op["portico_ippool_addresses"]; !f.labels["state"]["free"] {
			return fmt.Errorf("portico_ippool_addresses has no state=free yet")
		}
		exported = op
		for name, f := range fw {
			exported[name] = f
		}
		return nil
	})
	return exported
}

// scrape parses a Prometheus text exposition into families.
func scrape(url string) (map[string]*family, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := parser.NewParser(parser.Options{})
	out := map[string]*family{}
	types := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(f, " "); ok {
				types[name] = typ
				out[name] = &family{typ: typ, labels: map[string]map[string]bool{}}
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series := line[:strings.LastIndexByte(line, ' ')]
		ls, err := p.ParseMetric(series)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", url, series, err)
		}
		name := ls.Get(model.MetricNameLabel)
		f := out[name]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && f == nil && (types[base] == "histogram" || types[base] == "summary") {
				f = out[base]
			}
		}
		if f == nil {
			return nil, fmt.Errorf("%s: series %s without a TYPE", url, series)
		}
		ls.Range(func(l labels.Label) {
			if l.Name == model.MetricNameLabel || l.Name == "le" || l.Name == "quantile" {
				return
			}
			if f.labels[l.Name] == nil {
				f.labels[l.Name] = map[string]bool{}
			}
			f.labels[l.Name][l.Value] = true
		})
	}
	return out, nil
}

func freeTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return fmt.Sprint(c.LocalAddr().(*net.UDPAddr).Port)
}

// monitorsSelect checks that the ServiceMonitor selects the operator's
// metrics Service by its labels and names one of its ports, and that the
// PodMonitor selects the forwarder's pods and names a port of theirs.
func monitorsSelect(t *testing.T, where string, rendered []byte) {
	t.Helper()
	type port struct {
		Name string `json:"name"`
	}
	type endpoint struct {
		Port string `json:"port"`
	}
	type monitor struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints    []endpoint `json:"endpoints"`
		PodEndpoints []endpoint `json:"podMetricsEndpoints"`
	}
	var sm, pm *monitor
	var svcLabels, podLabels map[string]string
	var svcPorts, podPorts []string
	for _, doc := range strings.Split(string(rendered), "\n---") {
		var o struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec json.RawMessage `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		switch {
		case o.Kind == "ServiceMonitor", o.Kind == "PodMonitor":
			m := &monitor{}
			if err := json.Unmarshal(o.Spec, m); err != nil {
				t.Fatal(err)
			}
			if o.Kind == "ServiceMonitor" {
				sm = m
			} else {
				pm = m
			}
		case o.Kind == "Service" && o.Metadata.Name == "portico-operator-metrics":
			svcLabels = o.Metadata.Labels
			var spec struct {
				Ports []port `json:"ports"`
			}
			if err := json.Unmarshal(o.Spec, &spec); err != nil {
				t.Fatal(err)
			}
			for _, p := range spec.Ports {
				svcPorts = append(svcPorts, p.Name)
			}
		case o.Kind == "DaemonSet" && o.Metadata.Name == "portico-forwarder":
			var spec struct {
				Template struct {
					Metadata struct {
						Labels map[string]string `json:"labels"`
					} `json:"metadata"`
					Spec struct {
						Containers []struct {
							Ports []port `json:"ports"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			}
			if err := json.Unmarshal(o.Spec, &spec); err != nil {
				t.Fatal(err)
			}
			podLabels = spec.Template.Metadata.Labels
			for _, c := range spec.Template.Spec.Containers {
				for _, p := range c.Ports {
					podPorts = append(podPorts, p.Name)
				}
			}
		}
	}
	if sm == nil || pm == nil || svcLabels == nil || podLabels == nil {
		t.Fatalf("%s: a monitor, the metrics Service or the forwarder DaemonSet is missing", where)
	}
	check := func(what string, m *monitor, ports []endpoint, labels map[string]string, have []string) {
		for k, v := range m.Selector.MatchLabels {
			if labels[k] != v {
				t.Errorf("%s: the %s selects %s=%s, which its target does not carry (%v)", where, what, k, v, labels)
			}
		}
		if len(ports) == 0 {
			t.Errorf("%s: the %s scrapes no port", where, what)
		}
		for _, p := range ports {
			if !slices.Contains(have, p.Port) {
				t.Errorf("%s: the %s scrapes port %q; its target has %v", where, what, p.Port, have)
			}
		}
	}
	check("ServiceMonitor", sm, sm.Endpoints, svcLabels, svcPorts)
	check("PodMonitor", pm, pm.PodEndpoints, podLabels, podPorts)
}
