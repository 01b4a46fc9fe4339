package monitoring_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// rulesFile is the plain rule-group file the rule unit tests load; the
// kustomize PrometheusRule holds the same groups (TestShippedMonitoring).
const rulesFile = "config/helm/portico/files/prometheus-rules.yaml"

// promtool returns the pinned promtool (hack/tools/promtool, built by
// hack/build-tools.sh into the tools directory), or $PROMTOOL when set.
func promtool(t *testing.T, root string) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		out, err := exec.Command(filepath.Join(root, "hack", "build-tools.sh"), "--print").Output()
		if err != nil {
			t.Fatalf("hack/build-tools.sh --print: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	p := filepath.Join(dir, "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("promtool not found at %s (run hack/build-tools.sh, which builds it from hack/tools/promtool, or set PROMTOOL): %v", p, err)
	}
	return p
}

// TestAlertRules runs the promtool rule unit tests of testdata/promtool
// against the shipped alert rules, checks that every alert has a case that
// fires it and one where it must stay silent, and that the tests catch an
// alert that never fires and one that fires on anything.
func TestAlertRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tool := promtool(t, root)
	tests, err := filepath.Glob("testdata/promtool/*.yaml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in testdata/promtool (%v)", err)
	}
	if out, err := runPromtool(tool, tests); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	rules := readYAML(t, filepath.Join(root, rulesFile))
	alerts := alertExprs(t, rules)
	fires, silent := expectations(t, tests)
	for alert := range alerts {
		if !fires[alert] {
			t.Errorf("no rule test expects %s to fire", alert)
		}
		if !silent[alert] {
			t.Errorf("no rule test expects %s to stay silent", alert)
		}
	}
	for a := range fires {
		if _, ok := alerts[a]; !ok {
			t.Errorf("rule tests name %s, which the rules do not have", a)
		}
	}

	// Mutants: with an alert's expression replaced by one that never
	// fires, the cases that expect it to fire must fail; replaced by one
	// that always fires, the cases that expect it silent must (so a silent
	// case only checked while the alert is pending does not count).
	for alert := range alerts {
		for _, m := range []struct {
			kind, expr string
			firing     bool
		}{
			{"never fires", "vector(1) == 0", true},
			{"always fires", "vector(1)", false},
		} {
			t.Run(alert+"/"+m.kind, func(t *testing.T) {
				dir := t.TempDir()
				mutated := filepath.Join(dir, "rules.yaml")
				writeYAML(t, mutated, withExpr(t, rules, alert, m.expr))
				var cases []string
				for _, f := range tests {
					doc := only(t, readYAML(t, f), alert, m.firing)
					if doc == nil {
						continue
					}
					doc["rule_files"] = []any{mutated}
					p := filepath.Join(dir, filepath.Base(f))
					writeYAML(t, p, doc)
					cases = append(cases, p)
				}
				out, err := runPromtool(tool, cases)
				if err == nil {
					t.Fatalf("the rule tests of %s pass with its expression replaced by %q", alert, m.expr)
				}
				if !bytes.Contains(out, []byte("alertname: "+alert+",")) {
					t.Fatalf("the rule tests fail, but not on %s:\n%s", alert, out)
				}
			})
		}
	}
}

// only returns the test file doc cut to the cases of alert that expect it to
// fire (firing) or to stay silent; nil when there are none.
func only(t *testing.T, doc map[string]any, alert string, firing bool) map[string]any {
	t.Helper()
	var kept []any
	groups, _ := doc["tests"].([]any)
	for _, g := range groups {
		g := g.(map[string]any)
		var cases []any
		all, _ := g["alert_rule_test"].([]any)
		for _, c := range all {
			c := c.(map[string]any)
			if exp, _ := c["exp_alerts"].([]any); c["alertname"] == alert && (len(exp) > 0) == firing {
				cases = append(cases, c)
			}
		}
		if len(cases) > 0 {
			g["alert_rule_test"] = cases
			delete(g, "promql_expr_test")
			kept = append(kept, g)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	doc["tests"] = kept
	return doc
}

func runPromtool(tool string, files []string) ([]byte, error) {
	cmd := exec.Command(tool, append([]string{"test", "rules"}, files...)...)
	return cmd.CombinedOutput()
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

func writeYAML(t *testing.T, path string, doc any) {
	t.Helper()
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rulesOf returns the rules of every group of a rule file.
func rulesOf(t *testing.T, doc map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	groups, _ := doc["groups"].([]any)
	for _, g := range groups {
		rs, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rs {
			out = append(out, r.(map[string]any))
		}
	}
	if len(out) == 0 {
		t.Fatal("no rules in the rule file")
	}
	return out
}

// alertExprs maps each alert to its expression.
func alertExprs(t *testing.T, doc map[string]any) map[string]string {
	out := map[string]string{}
	for _, r := range rulesOf(t, doc) {
		if a, ok := r["alert"].(string); ok {
			out[a] = fmt.Sprint(r["expr"])
		}
	}
	return out
}

// withExpr returns a copy of the rule file with alert's expression replaced.
func withExpr(t *testing.T, doc map[string]any, alert, expr string) map[string]any {
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	for _, r := range rulesOf(t, c) {
		if r["alert"] == alert {
			r["expr"] = expr
			return c
		}
	}
	t.Fatalf("no alert %s", alert)
	return nil
}

// expectations returns the alerts some rule test expects to fire, and those
// some rule test expects to be silent (exp_alerts empty).
func expectations(t *testing.T, files []string) (fires, silent map[string]bool) {
	fires, silent = map[string]bool{}, map[string]bool{}
	for _, f := range files {
		tests, _ := readYAML(t, f)["tests"].([]any)
		for _, tg := range tests {
			cases, _ := tg.(map[string]any)["alert_rule_test"].([]any)
			for _, c := range cases {
				c := c.(map[string]any)
				name := fmt.Sprint(c["alertname"])
				if exp, _ := c["exp_alerts"].([]any); len(exp) > 0 {
					fires[name] = true
				} else {
					silent[name] = true
				}
			}
		}
	}
	return fires, silent
}
