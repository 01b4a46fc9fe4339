package testenv_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/internal/gen"
	"github.com/portico-lb/portico/internal/testenv"
)

// TestHarness proves the harness: a real control plane with Portico's CRDs,
// a Service of type LoadBalancer whose nodePort the apiserver allocates,
// kubectl reporting the pinned server version, kube-controller-manager and
// kwok built at their pins, and a teardown that leaves
// no directory behind.
func TestHarness(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubeconfigDir := filepath.Dir(env.Kubeconfig)

	for _, crd := range []string{"loadbalancers.lb.portico.dev", "ippools.lb.portico.dev"} {
		var got apiextensionsv1.CustomResourceDefinition
		s := env.Scheme
		_ = apiextensionsv1.AddToScheme(s)
		c, err := client.New(env.Config, client.Options{Scheme: s})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Name: crd}, &got); err != nil {
			t.Errorf("CRD %s not installed: %v", crd, err)
		}
	}

	svc := gen.Service("default", "harness", gen.ForAPI())
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if np := svc.Spec.Ports[0].NodePort; np < 30000 || np > 32767 {
		t.Errorf("allocated nodePort %d outside 30000-32767", np)
	}

	out, err := env.Kubectl("version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
		ClientVersion struct{ GitVersion string } `json:"clientVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	pinned := pinnedKubernetes(t)
	if v.ServerVersion.GitVersion != pinned || v.ClientVersion.GitVersion != pinned {
		t.Errorf("kubectl version: server %q client %q, want the pinned %s", v.ServerVersion.GitVersion, v.ClientVersion.GitVersion, pinned)
	}

	// kube-controller-manager and kwok are the pinned versions too.
	for bin, want := range map[string]string{
		"kube-controller-manager": "Kubernetes " + pinned,
		"kwok":                    "kwok version " + pinnedIn(t, filepath.Join("hack", "tools", "kwok", "go.mod"), "sigs.k8s.io/kwok") + " ",
	} {
		out, err := testenv.RunChecked(bin+" --version", exec.Command(filepath.Join(env.BinDir, bin), "--version"))
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version: %q (%v), want it to start with %q", bin, out, err, want)
		}
	}

	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kubeconfigDir); !os.IsNotExist(err) {
		t.Errorf("kubeconfig directory %s survives Stop", kubeconfigDir)
	}
	if err := env.Client.List(ctx, &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceList"}}); err == nil {
		t.Error("the apiserver still answers after Stop")
	}
}

func pinnedKubernetes(t *testing.T) string {
	t.Helper()
	return pinnedIn(t, filepath.Join("hack", "tools", "go.mod"), "k8s.io/kubernetes")
}

// pinnedIn returns the version of module in the go.mod at path (relative to
// the module root).
func pinnedIn(t *testing.T, path, module string) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(module) + ` (v\S+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("%s not pinned in %s", module, path)
	}
	return strings.TrimSpace(m[1])
}
