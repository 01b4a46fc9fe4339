package plugin_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portico-lb/portico/plugin"
)

// The tests below are issue 21: what a new user meets when a load balancer
// "does not work", over the troubles fixture.

func troubleWorld() world { return world{objs: append(cluster(), troubles()...)} }

// TestTroubleTables checks every command's output over the troubles fixture
// against testdata/*.golden.
func TestTroubleTables(t *testing.T) {
	w := troubleWorld()
	tests := []struct {
		golden string
		args   []string
	}{
		{"lab-status", []string{"status", "-n", "lab"}},
		{"lab-status-wide", []string{"status", "-n", "lab", "-o", "wide"}},
		{"lab-cost-by-class", []string{"cost", "-n", "lab", "--by", "class"}},
		{"lab-cost-wide", []string{"cost", "-n", "lab", "-o", "wide"}},
		{"lab-describe-ports", []string{"describe", "-n", "lab", "ports"}},
		{"lab-describe-empty", []string{"describe", "-n", "lab", "empty"}},
		{"lab-describe-plain", []string{"describe", "-n", "lab", "plain"}},
		{"lab-describe-waiting", []string{"describe", "-n", "lab", "waiting"}},
		{"lab-describe-other", []string{"describe", "-n", "lab", "other"}},
		{"lab-describe-bare", []string{"describe", "-n", "lab", "bare"}},
		{"lab-describe-refused", []string{"describe", "-n", "lab", "refused"}},
		{"lab-describe-huge", []string{"describe", "-n", "lab", "huge"}},
		{"lab-describe-other-yaml", []string{"describe", "-n", "lab", "other", "-o", "yaml"}},
		{"lab-pools", []string{"pools"}},
		{"lab-pools-wide", []string{"pools", "-o", "wide"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			r := w.run(t, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
			golden(t, tt.golden, r.stdout+stderrSection(r.stderr))
		})
	}
}

// stderrSection keeps warnings in the golden files, marked.
func stderrSection(s string) string {
	if s == "" {
		return ""
	}
	return "--- stderr ---\n" + s
}

// row returns the table row whose first cell is name.
func row(t *testing.T, out, name string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f
		}
	}
	t.Fatalf("no row %q in:\n%s", name, out)
	return nil
}

// column returns the cell of row name under header col (single-word
// headers, cells without spaces).
func column(t *testing.T, out, name, col string) string {
	t.Helper()
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	for i, h := range header {
		if h == col {
			return row(t, out, name)[i]
		}
	}
	t.Fatalf("no column %q in %v", col, header)
	return ""
}

func lineWith(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return l
		}
	}
	t.Fatalf("no line starting %q in:\n%s", prefix, out)
	return ""
}

func TestEndpointsInView(t *testing.T) {
	w := troubleWorld()
	st := w.run(t, "status", "-n", "lab").stdout
	if got := column(t, st, "empty", "ENDPOINTS"); got != "0/0" {
		t.Errorf("status ENDPOINTS of lab/empty = %q, want 0/0", got)
	}
	if got := column(t, st, "plain", "ENDPOINTS"); got != "2/3" {
		t.Errorf("status ENDPOINTS of lab/plain = %q, want 2/3", got)
	}
	wide := w.run(t, "status", "-n", "edge", "-o", "wide").stdout
	if !strings.Contains(wide, "ENDPOINT NODES") || !strings.Contains(strings.Join(row(t, wide, "dns"), " "), "node-b;BGP:node-a,node-c node-a,node-c") {
		t.Errorf("status -o wide does not name the nodes with ready endpoints of edge/dns:\n%s", wide)
	}

	d := w.run(t, "describe", "-n", "lab", "empty").stdout
	serving := lineWith(t, d, "Serving:")
	for _, s := range []string{"False", "(NoEndpoints)", "no pod matches the selector app=emtpy"} {
		if !strings.Contains(serving, s) {
			t.Errorf("describe lab/empty: Serving line %q lacks %q", serving, s)
		}
	}
	if l := lineWith(t, d, "Endpoints:"); !strings.Contains(l, "0 ready of 0") {
		t.Errorf("describe lab/empty: %q", l)
	}
	d = w.run(t, "describe", "-n", "edge", "dns").stdout
	if l := lineWith(t, d, "Endpoints:"); !strings.Contains(l, "2 ready of 2, on node-a, node-c") {
		t.Errorf("describe edge/dns: %q, want the ready endpoints and their nodes", l)
	}
}

func TestLongPortListsSummarised(t *testing.T) {
	w := troubleWorld()
	st := w.run(t, "status", "-n", "lab").stdout
	if got := column(t, st, "ports", "PORTS"); got != "80/TCP,443/TCP,+98" {
		t.Errorf("status PORTS of 100 ports = %q, want 80/TCP,443/TCP,+98", got)
	}
	for _, l := range strings.Split(st, "\n") {
		if len(l) > 200 {
			t.Errorf("status line of %d characters: %.80q...", len(l), l)
		}
	}
	if got := column(t, st, "plain", "PORTS"); got != "80/TCP" {
		t.Errorf("a short list is shown whole: %q", got)
	}
	wide := w.run(t, "status", "-n", "lab", "-o", "wide").stdout
	if !strings.Contains(row(t, wide, "ports")[3], "8000/TCP,8001/TCP") || !strings.Contains(wide, ",8097/TCP") {
		t.Errorf("status -o wide does not show every port:\n%.400s", wide)
	}
	d := w.run(t, "describe", "-n", "lab", "ports").stdout
	if !strings.Contains(d, "8097/TCP") {
		t.Errorf("describe does not show every port")
	}
}

// TestClassReadOnce: a Service served through the default class has the
// class its record names in every command.
func TestClassReadOnce(t *testing.T) {
	w := troubleWorld()
	const want = "lb.portico.dev/local"
	if got := column(t, w.run(t, "status", "-n", "lab").stdout, "plain", "CLASS"); got != want {
		t.Errorf("status: class %q, want %q", got, want)
	}
	if l := lineWith(t, w.run(t, "describe", "-n", "lab", "plain").stdout, "Class:"); !strings.Contains(l, want) {
		t.Errorf("describe: %q, want %q", l, want)
	}
	var report plugin.CostReport
	if err := json.Unmarshal([]byte(w.run(t, "cost", "-n", "lab", "-o", "json").stdout), &report); err != nil {
		t.Fatal(err)
	}
	for _, l := range report.LoadBalancers {
		if l.Name == "plain" && l.Class != want {
			t.Errorf("cost: class %q, want %q", l.Class, want)
		}
	}
	var d plugin.Description
	if err := json.Unmarshal([]byte(w.run(t, "describe", "-n", "lab", "plain", "-o", "json").stdout), &d); err != nil || d.Class != want {
		t.Errorf("describe -o json: class %q (%v), want %q", d.Class, err, want)
	}
}

func TestUnservedClassNamed(t *testing.T) {
	w := troubleWorld()
	served := "lb.portico.dev/aws, lb.portico.dev/gcp, lb.portico.dev/local"
	tests := []struct {
		name string
		want []string
	}{
		{"other", []string{"no Portico backend in this cluster serves class example.com/other", served}},
		{"bare", []string{"names no spec.loadBalancerClass", "default class", served}},
		{"refused", []string{"does not serve class lb.portico.dev/azure (ClassNotServed)", served}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := w.run(t, "describe", "-n", "lab", tt.name)
			if r.code != 0 {
				t.Errorf("exit %d: a Service nobody serves is not a sign the operator is down; stderr %s", r.code, r.stderr)
			}
			l := lineWith(t, r.stdout, "LoadBalancer:")
			if strings.Contains(l, "yet") {
				t.Errorf("describe says a load balancer is coming: %q", l)
			}
			for _, s := range tt.want {
				if !strings.Contains(l, s) {
					t.Errorf("LoadBalancer line %q lacks %q", l, s)
				}
			}
		})
	}
}

func TestPendingCostHasReason(t *testing.T) {
	w := troubleWorld()
	if got := column(t, w.run(t, "status", "-n", "lab").stdout, "waiting", "MONTHLY"); got != "<ProviderRetrying>" {
		t.Errorf("status MONTHLY COST of a pending load balancer = %q, want <ProviderRetrying>", got)
	}
	r := w.run(t, "cost", "-n", "lab")
	if !strings.Contains(r.stderr, "lab/waiting has no cost: ProviderRetrying: not priced until the load balancer is ready: lb.portico.dev/aws backend is retrying") {
		t.Errorf("cost warning for a pending load balancer:\n%s", r.stderr)
	}
	d := w.run(t, "describe", "-n", "lab", "waiting").stdout
	if !strings.Contains(d, "<none>: ProviderRetrying: not priced until") {
		t.Errorf("describe cost of a pending load balancer:\n%s", d)
	}
}

// TestMessagesKeepReason: an oversized value in a message is shortened, the
// words that say what is wrong are kept.
func TestMessagesKeepReason(t *testing.T) {
	r := troubleWorld().run(t, "describe", "-n", "lab", "huge")
	for _, prefix := range []string{"Ready:", "lb.portico.dev/Ready", "Warning"} {
		l := lineWith(t, r.stdout, prefix)
		if len(l) > 300 {
			t.Errorf("%s line of %d characters", prefix, len(l))
		}
		for _, s := range []string{`"10.0.0.1,10.0.0.1,`, `(1080 characters)`, "is not a sharing key: want a key of letters"} {
			if !strings.Contains(l, s) {
				t.Errorf("%s line lacks %q: %s", prefix, s, l)
			}
		}
	}
}
