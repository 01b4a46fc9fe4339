package config_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/internal/testenv"
)

// publishedChart is where the release workflow pushes the chart ("make
// push-chart"); the tests render the same chart from this checkout.
const publishedChart = "oci://ghcr.io/portico-lb/charts/portico"

// documentedInstall is one "helm install" command of the README or an
// install guide.
type documentedInstall struct {
	File string
	Args []string // after "helm install"
}

var fence = regexp.MustCompile("(?s)```sh\n(.*?)```")

// documentedInstalls returns every helm install command in fenced sh
// blocks of files.
func documentedInstalls(t *testing.T, files ...string) []documentedInstall {
	t.Helper()
	var out []documentedInstall
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range fence.FindAllStringSubmatch(string(b), -1) {
			script := strings.ReplaceAll(block[1], "\\\n", " ")
			for _, line := range strings.Split(script, "\n") {
				line = strings.TrimSpace(line)
				if !strings.HasPrefix(line, "helm install ") {
					continue
				}
				words, err := shellWords(line)
				if err != nil {
					t.Fatalf("%s: %q: %v", f, line, err)
				}
				out = append(out, documentedInstall{File: f, Args: words[2:]})
			}
		}
	}
	return out
}

// shellWords splits a command as a POSIX shell does for the quoting that
// the guides use: single quotes, double quotes and backslash escapes.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errUnterminated
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errUnterminated
			}
			inWord = true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

type shellError string

func (e shellError) Error() string { return string(e) }

const errUnterminated = shellError("unterminated quote")

func TestShellWords(t *testing.T) {
	got, err := shellWords(`helm install p c --set 'a.b\.c=d' --set x\.y=z --set "q=\"1\""`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"helm", "install", "p", "c", "--set", `a.b\.c=d`, "--set", "x.y=z", "--set", `q="1"`}
	if !slices.Equal(got, want) {
		t.Errorf("shellWords = %q, want %q", got, want)
	}
	if _, err := shellWords(`a 'b`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

// templateArgs turns documented "helm install" arguments into "helm
// template" arguments for the chart in this checkout: the published chart
// reference becomes helm/portico; install-only flags go.
func templateArgs(t *testing.T, args []string) (release, chart string, rest []string) {
	t.Helper()
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--create-namespace" || a == "--wait" || a == "--atomic":
		case a == "--version":
			i++
		case strings.HasPrefix(a, "--version="):
		case a == "-n" || a == "--namespace" || a == "--set" || a == "-f" || a == "--values":
			rest = append(rest, a, args[i+1])
			i++
		case strings.HasPrefix(a, "-"):
			rest = append(rest, a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		t.Fatalf("helm install %q: want a release name and a chart", args)
	}
	chart = pos[1]
	switch chart {
	case publishedChart, "config/helm/portico":
		chart = "helm/portico"
	default:
		t.Fatalf("helm install %q: chart %s is neither %s nor config/helm/portico", args, chart, publishedChart)
	}
	return pos[0], chart, rest
}

func helmCmd(t *testing.T, binDir string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "helm"), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	return cmd
}

func setValue(args []string, key string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--set" {
			if v, ok := strings.CutPrefix(args[i+1], key+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("helm/portico/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		t.Fatal(err)
	}
	return chart.AppVersion
}

// TestDocumentedHelmInstalls lints and renders every helm install command
// of the README and the install guides (each platform's at least once, the
// README's and its guide's the same), dry-run applies the result and checks
// that it runs the published images at the chart's appVersion with the
// provider, forwarder and cloud identity the platform needs. Without its
// cloud identity each cloud command must fail to render.
// TestManifests runs it on its control plane.
func testDocumentedHelmInstalls(t *testing.T, env *testenv.Env) {
	guides := map[string]string{"aws": "../docs/install/eks.md", "gcp": "../docs/install/gke.md", "azure": "../docs/install/aks.md", "local": "../docs/install/kind.md"}
	identity := map[string]string{"aws": `serviceAccount.annotations.eks\.amazonaws\.com/role-arn`,
		"gcp": `serviceAccount.annotations.iam\.gke\.io/gcp-service-account`, "azure": `serviceAccount.annotations.azure\.workload\.identity/client-id`}

	readme := documentedInstalls(t, "../README.md")
	all := append(readme, documentedInstalls(t, "../docs/install/eks.md", "../docs/install/gke.md", "../docs/install/aks.md", "../docs/install/kind.md")...)
	seen := map[string]bool{}
	for _, in := range readme {
		provider, ok := setValue(in.Args, "provider")
		if !ok {
			provider = "local"
		}
		if !slices.Contains(in.Args, publishedChart) {
			continue
		}
		seen[provider] = true
		if !slices.ContainsFunc(documentedInstalls(t, guides[provider]), func(g documentedInstall) bool { return slices.Equal(g.Args, in.Args) }) {
			t.Errorf("README's install for provider %s is not in %s:\nhelm install %s", provider, guides[provider], strings.Join(in.Args, " "))
		}
	}
	for _, p := range []string{"aws", "gcp", "azure", "local"} {
		if !seen[p] {
			t.Errorf("README documents no helm install from %s for provider %s", publishedChart, p)
		}
	}

	for i, in := range all {
		release, chart, args := templateArgs(t, in.Args)
		provider, ok := setValue(args, "provider")
		if !ok {
			provider = "local"
		}
		t.Run(strings.TrimPrefix(filepath.Base(in.File), "")+"-"+provider+"-"+string(rune('a'+i)), func(t *testing.T) {
			if out, err := helmCmd(t, env.BinDir, append([]string{"lint", chart, "--strict"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("helm lint %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			rendered := run(t, helmCmd(t, env.BinDir, append([]string{"template", release, chart, "--include-crds"}, args...)...))
			dryRunApply(t, env, rendered)
			objs := split(t, rendered)
			d := find[appsv1.Deployment](t, objs, "Deployment", "portico-operator")
			tag := appVersion(t)
			if v, ok := setValue(args, "image.tag"); ok {
				tag = v
			}
			if got, want := d.Spec.Template.Spec.Containers[0].Image, "ghcr.io/portico-lb/operator:"+tag; got != want {
				t.Errorf("operator image %s, want %s", got, want)
			}
			if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--providers="+provider) {
				t.Errorf("operator args %v lack --providers=%s", d.Spec.Template.Spec.Containers[0].Args, provider)
			}
			ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", "portico-forwarder")
			if provider == "local" {
				if ds == nil {
					t.Fatal("local mode without the forwarder DaemonSet")
				}
				if got, want := ds.Spec.Template.Spec.Containers[0].Image, "ghcr.io/portico-lb/forwarder:"+tag; got != want {
					t.Errorf("forwarder image %s, want %s", got, want)
				}
				return
			}
			if ds != nil {
				t.Errorf("provider %s runs the forwarder DaemonSet", provider)
			}
			if provider == "azure" && d.Spec.Template.Labels["azure.workload.identity/use"] != "true" {
				t.Error("azure workload identity without the pod label azure.workload.identity/use=true")
			}
			// The same command without its cloud identity must not render.
			var without []string
			for j := 0; j < len(args); j++ {
				if args[j] == "--set" && strings.HasPrefix(args[j+1], identity[provider]+"=") {
					j++
					continue
				}
				without = append(without, args[j])
			}
			if len(without) == len(args) {
				t.Fatalf("provider %s installed without %s", provider, identity[provider])
			}
			out, err := helmCmd(t, env.BinDir, append([]string{"template", release, chart}, without...)...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "needs a cloud identity") {
				t.Errorf("provider %s without a cloud identity rendered: %v\n%s", provider, err, out)
			}
			if out, err := helmCmd(t, env.BinDir, append([]string{"template", release, chart, "--set", "cloudIdentity=external"}, without...)...).CombinedOutput(); err != nil {
				t.Errorf("cloudIdentity=external: %v\n%s", err, out)
			}
		})
	}
}

// TestImageReferences: the kustomize base runs the published images at the
// chart's appVersion, and the schema rejects values the chart would
// misrender.
func TestImageReferences(t *testing.T) {
	bin, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	objs := split(t, run(t, exec.Command(filepath.Join(bin, "kubectl"), "kustomize", "default")))
	tag := appVersion(t)
	d := find[appsv1.Deployment](t, objs, "Deployment", "portico-operator")
	ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", "portico-forwarder")
	if got, want := d.Spec.Template.Spec.Containers[0].Image, "ghcr.io/portico-lb/operator:"+tag; got != want {
		t.Errorf("kustomize operator image %s, want %s (the chart's appVersion)", got, want)
	}
	if got, want := ds.Spec.Template.Spec.Containers[0].Image, "ghcr.io/portico-lb/forwarder:"+tag; got != want {
		t.Errorf("kustomize forwarder image %s, want %s (the chart's appVersion)", got, want)
	}
	for _, bad := range [][]string{
		{"--set", "provider=oracle"},
		{"--set", "clusterID=Not_A_Valid_ID"},
		{"--set", "operator.replicas=0"},
		{"--set", "imagee.tag=typo"},
		{"--set", "cloudIdentity=maybe"},
		{"--set", "image.pullPolicy=Sometimes"},
	} {
		if out, err := helmCmd(t, bin, append([]string{"template", "portico", "helm/portico"}, bad...)...).CombinedOutput(); err == nil {
			t.Errorf("helm template %v rendered; the schema or chart should refuse it:\n%.300s", bad, out)
		}
	}
}
