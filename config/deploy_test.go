// Package config_test checks the install manifests: every kustomize overlay
// and the Helm chart render, pass a server-side dry-run apply on a real
// apiserver, and keep the properties the install guides promise.
package config_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/internal/testenv"
)

var overlays = []string{"default", "overlays/eks", "overlays/gke", "overlays/aks", "overlays/kind"}

type object struct {
	Kind     string
	Name     string
	Manifest string
}

func split(t *testing.T, rendered []byte) []object {
	t.Helper()
	var out []object
	for _, doc := range strings.Split(string(rendered), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		var m metav1.PartialObjectMetadata
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if m.Kind == "" {
			continue
		}
		out = append(out, object{Kind: m.Kind, Name: m.Name, Manifest: doc})
	}
	return out
}

func find[T any](t *testing.T, objs []object, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			v := new(T)
			if err := yaml.UnmarshalStrict([]byte(o.Manifest), v); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return v
		}
	}
	return nil
}

func run(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return out
}

func kustomize(t *testing.T, env *testenv.Env, dir string) []byte {
	t.Helper()
	return run(t, env.Kubectl("kustomize", dir))
}

func helm(t *testing.T, env *testenv.Env, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.BinDir, "helm"), append([]string{"template", "portico", "helm/portico", "--namespace", "portico-system", "--include-crds"}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	return run(t, cmd)
}

func dryRunApply(t *testing.T, env *testenv.Env, manifests []byte) {
	t.Helper()
	cmd := env.Kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=portico-test", "-f", "-")
	cmd.Stdin = bytes.NewReader(manifests)
	out := run(t, cmd)
	if !strings.Contains(string(out), "serverside-applied (server dry run)") {
		t.Fatalf("dry-run apply printed no applied objects:\n%s", out)
	}
}

func TestManifests(t *testing.T) {
	env := testenv.Start(t)
	// A dry run does not create the namespace the other objects live in.
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}}); err != nil {
		t.Fatal(err)
	}

	for _, o := range overlays {
		t.Run(strings.ReplaceAll(o, "/", "-"), func(t *testing.T) {
			rendered := kustomize(t, env, o)
			dryRunApply(t, env, rendered)
			objs := split(t, rendered)
			checkOperator(t, objs, o)
			ds := find[appsv1.DaemonSet](t, objs, "DaemonSet", "portico-forwarder")
			switch o {
			case "default", "overlays/kind":
				if ds == nil {
					t.Fatal("no forwarder DaemonSet")
				}
				checkForwarder(t, ds)
			default:
				if ds != nil {
					t.Errorf("cloud overlay %s runs the forwarder", o)
				}
				if find[rbacv1.ClusterRole](t, objs, "ClusterRole", "portico-forwarder") != nil {
					t.Errorf("cloud overlay %s grants the forwarder's ClusterRole without running it", o)
				}
				if find[rbacv1.Role](t, objs, "Role", "portico-forwarder") != nil {
					t.Errorf("cloud overlay %s grants the forwarder's Lease Role without running it", o)
				}
			}
		})
	}

	t.Run("documented-helm-installs", func(t *testing.T) { testDocumentedHelmInstalls(t, env) })

	t.Run("helm", func(t *testing.T) {
		chart := helm(t, env)
		dryRunApply(t, env, chart)
		want := names(split(t, kustomize(t, env, "default")))
		got := names(split(t, chart))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("helm renders\n%v\nkustomize renders\n%v", got, want)
		}
		objs := split(t, chart)
		checkOperator(t, objs, "helm")
		checkForwarder(t, find[appsv1.DaemonSet](t, objs, "DaemonSet", "portico-forwarder"))

		gen := find[rbacv1.ClusterRole](t, split(t, run(t, exec.Command("cat", "rbac/role.yaml"))), "ClusterRole", "portico-operator")
		hr := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "portico-operator")
		if !reflect.DeepEqual(normalize(gen.Rules), normalize(hr.Rules)) {
			t.Errorf("chart ClusterRole rules differ from the generated config/rbac/role.yaml:\nchart %v\ngen   %v", hr.Rules, gen.Rules)
		}

		aws := split(t, helm(t, env, "--set", "provider=aws", "--set", "forwarder.enabled=false",
			"--set", "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/p",
			"--set", "defaultClass=lb.portico.dev/aws"))
		if find[appsv1.DaemonSet](t, aws, "DaemonSet", "portico-forwarder") != nil {
			t.Error("forwarder.enabled=false still renders the DaemonSet")
		}
		d := find[appsv1.Deployment](t, aws, "Deployment", "portico-operator")
		args := d.Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(args, "--providers=aws") || !slices.Contains(args, "--default-class=lb.portico.dev/aws") {
			t.Errorf("provider values not in args: %v", args)
		}
		if sa := find[corev1.ServiceAccount](t, aws, "ServiceAccount", "portico-operator"); sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
			t.Error("service account annotation not rendered")
		}

		cmd := exec.Command(filepath.Join(env.BinDir, "helm"), "template", "portico", "helm/portico", "--set", "provider=oracle")
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "provider") || !strings.Contains(string(out), "must be one of") {
			t.Errorf("an unknown provider rendered without a clear error: %v\n%s", err, out)
		}
	})
}

func names(objs []object) []string {
	var out []string
	for _, o := range objs {
		if o.Kind == "Namespace" { // helm installs into --namespace (--create-namespace)
			continue
		}
		if o.Kind == "Secret" && o.Name == "portico-heartbeat-key" {
			// helm generates the heartbeat key; with kustomize the user
			// creates it (docs/local-mode.md): no key ships in the repo.
			continue
		}
		out = append(out, o.Kind+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}

func normalize(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out = append(out, g+"/"+res+"/"+v)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func checkOperator(t *testing.T, objs []object, where string) {
	t.Helper()
	d := find[appsv1.Deployment](t, objs, "Deployment", "portico-operator")
	if d == nil {
		t.Fatalf("%s: no operator Deployment", where)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("%s: replicas %v, want 2", where, d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("%s: operator runs without --leader-elect: %v", where, c.Args)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: operator pod is not runAsNonRoot", where)
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("%s: operator root filesystem is writable", where)
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Errorf("%s: operator lacks probes", where)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: operator lacks resource requests/limits: %+v", where, c.Resources)
	}
	if pdb := find[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "portico-operator"); pdb == nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("%s: no PodDisruptionBudget keeping one operator available", where)
	}
	if find[corev1.Service](t, objs, "Service", "portico-operator-metrics") == nil {
		t.Errorf("%s: no metrics Service", where)
	}
	cr := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "portico-operator")
	for _, r := range cr.Rules {
		if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") {
			t.Errorf("%s: operator ClusterRole is not least-privilege: %+v", where, r)
		}
	}
}

func checkForwarder(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("forwarder is not hostNetwork")
	}
	caps := pod.Containers[0].SecurityContext.Capabilities
	var added []string
	for _, c := range caps.Add {
		added = append(added, string(c))
	}
	sort.Strings(added)
	if fmt.Sprint(added) != "[NET_ADMIN NET_RAW]" || len(caps.Drop) != 1 || caps.Drop[0] != "ALL" {
		t.Errorf("forwarder capabilities add %v drop %v, want only NET_ADMIN and NET_RAW", added, caps.Drop)
	}
	if pod.Containers[0].SecurityContext.Privileged != nil && *pod.Containers[0].SecurityContext.Privileged {
		t.Error("forwarder is privileged")
	}
	tolerateAll := false
	for _, tol := range pod.Tolerations {
		if tol.Operator == corev1.TolerationOpExists && tol.Key == "" {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Error("forwarder does not tolerate every taint")
	}
	if pod.NodeSelector[corev1.LabelOSStable] != "linux" {
		t.Errorf("forwarder node selector %v, want kubernetes.io/os: linux", pod.NodeSelector)
	}
	c := pod.Containers[0]
	if !slices.Contains(c.Args, "--heartbeat-key-file=/etc/portico/heartbeat/keys") || len(pod.Volumes) == 0 ||
		pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "portico-heartbeat-key" {
		t.Errorf("forwarder does not read its heartbeat key from the Secret: args %v volumes %+v", c.Args, pod.Volumes)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("forwarder readiness probe %+v", c.ReadinessProbe)
	}
}
