// Package testenv starts a real Kubernetes control plane for tests: the
// kube-apiserver and etcd that hack/build-tools.sh builds from pinned module
// sources, run through controller-runtime's envtest with Portico's CRDs
// installed, and on request (Options) kube-controller-manager and kwok, built
// the same way. Nothing is downloaded.
//
// It also holds the one way tests start a long-running binary (Process,
// StartChecked): output captured, and a panic or an unexpected exit is an
// error.
//
// Start registers the teardown with t.Cleanup; it also stops the control
// plane on SIGINT/SIGTERM so an interrupted run leaves no process or
// temporary directory behind.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/portico-lb/portico/internal/scheme"
)

// Env is a running control plane.
type Env struct {
	// Config reaches the apiserver as cluster admin.
	Config *rest.Config
	// Client is a direct (uncached) client with Portico's scheme.
	Client client.Client
	// Scheme has client-go's and Portico's types.
	Scheme *runtime.Scheme
	// Kubeconfig is the path of a kubeconfig file for Config, for kubectl
	// and the binaries under test.
	Kubeconfig string
	// BinDir holds kube-apiserver, etcd, kubectl, kube-controller-manager
	// and kwok.
	BinDir string

	env      *envtest.Environment
	procs    []*Process
	stopOnce sync.Once
	stopErr  error
}

// Start starts a bare control plane (apiserver and etcd) for t and stops it
// when t ends.
func Start(t testing.TB) *Env {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts a control plane with the components opts asks for and
// stops it when t ends; a component that panicked or exited on its own fails
// t.
func StartWith(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := NewWith(opts)
	if err != nil {
		t.Fatalf("starting control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("stopping control plane: %v", err)
		}
	})
	return e
}

// New starts a bare control plane; the caller must call Stop. Prefer Start
// in tests; New serves TestMain and programs (the demo, benchmarks).
func New() (*Env, error) { return NewWith(Options{}) }

// NewWith starts a control plane with the components opts asks for; the
// caller must call Stop.
func NewWith(opts Options) (*Env, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	e := &Env{Scheme: scheme.New(), BinDir: bin}
	e.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: bin,
		Scheme:                e.Scheme,
	}
	// Room for thousands of Services (benchmarks, scale tests): envtest's
	// default ClusterIP range is a /24. Dual-stack, so IPv6 Services can be
	// created (e2e/bgp); Services that name no family stay IPv4.
	e.env.ControlPlane.GetAPIServer().Configure().
		Set("service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/108")
	if opts.NodePortRange != "" {
		e.env.ControlPlane.GetAPIServer().Configure().Set("service-node-port-range", opts.NodePortRange)
	}
	cfg, err := e.env.Start()
	if err != nil {
		_ = e.env.Stop()
		return nil, err
	}
	stopOnSignal(e)
	cfg.QPS, cfg.Burst = 2000, 4000
	e.Config = cfg
	if e.Client, err = client.New(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if e.Kubeconfig, err = writeKubeconfig(e.env); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if err := e.startComponents(opts); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

// Stop stops kube-controller-manager and kwok when they run, then the
// apiserver and etcd, and removes their directories. It reports a component
// that panicked or exited on its own.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		e.stopErr = errors.Join(e.stopComponents(), e.env.Stop())
		if e.Kubeconfig != "" {
			_ = os.RemoveAll(filepath.Dir(e.Kubeconfig))
		}
		unregister(e)
	})
	return e.stopErr
}

// Kubectl returns a kubectl command against the control plane. The
// kubeconfig comes through $KUBECONFIG, so plugin names (kubectl lb ...) may
// come first.
func (e *Env) Kubectl(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(e.BinDir, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.Kubeconfig)
	return cmd
}

func writeKubeconfig(env *envtest.Environment) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "portico-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding admin user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("rendering kubeconfig: %w", err)
	}
	dir, err := os.MkdirTemp("", "portico-kubeconfig-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// BinDir returns the directory of kube-apiserver, etcd, kubectl,
// kube-controller-manager and kwok:
// KUBEBUILDER_ASSETS when set (the Makefile sets it), else the cache directory
// hack/build-tools.sh prints.
func BinDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, checkBins(d)
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(root, "hack", "build-tools.sh"), "--print").Output()
	if err != nil {
		return "", fmt.Errorf("hack/build-tools.sh --print: %w", err)
	}
	d := strings.TrimSpace(string(out))
	return d, checkBins(d)
}

func checkBins(dir string) error {
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl", "kube-controller-manager", "kwok"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s missing in %s: run 'make tools' (it builds the control plane from pinned module sources): %w", b, dir, err)
		}
	}
	return nil
}

// ModuleRoot returns the directory of Portico's go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(data), "module github.com/portico-lb/portico\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod of github.com/portico-lb/portico not found above the working directory")
		}
		dir = parent
	}
}

var (
	sigMu   sync.Mutex
	running = map[*Env]bool{}
	sigOnce sync.Once
)

// stopOnSignal stops every running control plane when the test binary is
// interrupted, then re-raises the signal.
func stopOnSignal(e *Env) {
	sigMu.Lock()
	running[e] = true
	sigMu.Unlock()
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			s := <-ch
			sigMu.Lock()
			envs := make([]*Env, 0, len(running))
			for env := range running {
				envs = append(envs, env)
			}
			sigMu.Unlock()
			for _, env := range envs {
				_ = env.Stop()
			}
			signal.Reset(s)
			_ = syscall.Kill(os.Getpid(), s.(syscall.Signal))
		}()
	})
}

func unregister(e *Env) {
	sigMu.Lock()
	delete(running, e)
	sigMu.Unlock()
}

// OperatorUser is the user OperatorConfig authenticates as.
const OperatorUser = "portico-operator-under-test"

// OperatorConfig returns a config for a user that holds exactly the
// operator's generated RBAC (config/rbac/role.yaml: the ClusterRole and the
// leader-election Role in portico-system), so tests prove the operator works
// without cluster-admin.
func (e *Env) OperatorConfig() (*rest.Config, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "portico-system"}}
	if err := e.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	subject := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: OperatorUser}
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("role.yaml: %w", err)
		}
		switch meta.Kind {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict([]byte(doc), &cr); err != nil {
				return nil, err
			}
			if err := createOrUpdate(ctx, e.Client, &cr); err != nil {
				return nil, err
			}
			crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: cr.Name + "-under-test"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
				Subjects: []rbacv1.Subject{subject}}
			if err := createOrUpdate(ctx, e.Client, crb); err != nil {
				return nil, err
			}
		case "Role":
			var r rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				return nil, err
			}
			if err := createOrUpdate(ctx, e.Client, &r); err != nil {
				return nil, err
			}
			rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: r.Name + "-under-test", Namespace: r.Namespace},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: r.Name},
				Subjects: []rbacv1.Subject{subject}}
			if err := createOrUpdate(ctx, e.Client, rb); err != nil {
				return nil, err
			}
		}
	}
	user, err := e.env.AddUser(envtest.User{Name: OperatorUser}, nil)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(user.Config())
	cfg.QPS, cfg.Burst = e.Config.QPS, e.Config.Burst
	return cfg, nil
}

func createOrUpdate(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		existing := obj.DeepCopyObject().(client.Object)
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
			return err
		}
		obj.SetResourceVersion(existing.GetResourceVersion())
		return c.Update(ctx, obj)
	}
	return err
}
