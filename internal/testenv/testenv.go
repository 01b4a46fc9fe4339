// Package testenv starts a real Kubernetes control plane for tests: the
// kube-apiserver and etcd that hack/build-tools.sh builds from pinned module
// sources, run through controller-runtime's envtest with Portico's CRDs
// installed. Nothing is downloaded.
//
// Start registers the teardown with t.Cleanup; it also stops the control
// plane on SIGINT/SIGTERM so an interrupted run leaves no process or
// temporary directory behind.
package testenv

import (
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

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

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
	// BinDir holds kube-apiserver, etcd and kubectl.
	BinDir string

	env      *envtest.Environment
	stopOnce sync.Once
	stopErr  error
}

// Start starts a control plane for t and stops it when t ends.
func Start(t testing.TB) *Env {
	t.Helper()
	e, err := New()
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

// New starts a control plane; the caller must call Stop. Prefer Start in
// tests; New serves TestMain and programs (the demo, benchmarks).
func New() (*Env, error) {
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
	// default ClusterIP range is a /24.
	e.env.ControlPlane.GetAPIServer().Configure().
		Set("service-cluster-ip-range", "10.96.0.0/16")
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
	return e, nil
}

// Stop stops the apiserver and etcd and removes their directories.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		e.stopErr = e.env.Stop()
		if e.Kubeconfig != "" {
			_ = os.RemoveAll(filepath.Dir(e.Kubeconfig))
		}
		unregister(e)
	})
	return e.stopErr
}

// Kubectl returns a kubectl command against the control plane.
func (e *Env) Kubectl(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(e.BinDir, "kubectl"), append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
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

// BinDir returns the directory of kube-apiserver, etcd and kubectl:
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
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
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
			return "", errors.New("Portico's go.mod not found above the working directory")
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
