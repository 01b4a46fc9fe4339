package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lbv1 "github.com/portico-lb/portico/api/v1alpha1"
	"github.com/portico-lb/portico/dataplane/dptest"
	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/internal/testenv"
	"github.com/portico-lb/portico/model"
	"github.com/portico-lb/portico/providers"
)

// The images run under podman (rootful, crun) with a private storage
// directory per test run, so nothing is left in the machine's image store.

type podman struct {
	global  []string // --root, --runroot, ... before the subcommand
	runOpts []string // after "run": resource limits this machine allows
}

var (
	podmanOnce sync.Once
	podmanInst *podman
	podmanErr  error
	loaded     = map[string]string{} // component -> loaded image reference
)

// podmanWithImages returns podman with this run's images loaded, skipping
// the test where podman cannot run them.
func podmanWithImages(t *testing.T) *podman {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running the images needs root (rootful podman)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("running the images needs podman and crun (apt-get install podman; .ci/run installs them)")
	}
	res, _ := built(t)
	podmanOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portico-podman-")
		if err != nil {
			podmanErr = err
			return
		}
		// The storage is this run's: removed by TestMain through cleanup.
		podmanCleanup = func() {
			p := &podman{global: podmanGlobal(dir, "overlay")}
			_, _ = p.run("rm", "--all", "--force")
			_, _ = p.run("rmi", "--all", "--force")
			_ = exec.Command("umount", "-R", filepath.Join(dir, "root", "overlay")).Run()
			os.RemoveAll(dir)
		}
		p := &podman{global: podmanGlobal(dir, "overlay")}
		for _, img := range res.Images {
			for _, pi := range img.Platforms {
				if pi.Platform.Architecture != runtime.GOARCH {
					continue
				}
				out, err := p.run("load", "--input", pi.DockerArchive)
				if err != nil {
					podmanErr = fmt.Errorf("podman load %s: %w\n%s", pi.DockerArchive, err, out)
					return
				}
				loaded[img.Component] = img.Ref
			}
		}
		podmanInst, podmanErr = probeRuntime(dir, loaded["kubectl-lb"])
	})
	if podmanErr != nil {
		t.Fatal(podmanErr)
	}
	return podmanInst
}

var podmanCleanup = func() {}

func podmanGlobal(dir, driver string) []string {
	return []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--storage-driver", driver, "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--tmpdir", filepath.Join(dir, "tmp")}
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	all := append([]string{}, p.global...)
	if len(args) > 0 && args[0] == "run" {
		all = append(append(append(all, "run"), p.runOpts...), args[1:]...)
	} else {
		all = append(all, args...)
	}
	return exec.Command("podman", all...)
}

// probeRuntime finds an OCI runtime that runs a container here. podman
// asks for more open files and processes than a sandbox's hard limits
// allow (setrlimit fails), so the containers get this process's limits;
// crun refuses a hybrid cgroup v1/v2 hierarchy, where runc works.
func probeRuntime(dir, image string) (*podman, error) {
	var nofile, nproc syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		return nil, err
	}
	if err := syscall.Getrlimit(6 /* RLIMIT_NPROC */, &nproc); err != nil {
		return nil, err
	}
	opts := []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Max, nofile.Max), "--ulimit", fmt.Sprintf("nproc=%d:%d", min(nproc.Max, 4096), min(nproc.Max, 4096))}
	var errs []string
	for _, runtime := range []string{"crun", "runc"} {
		if _, err := exec.LookPath(runtime); err != nil {
			errs = append(errs, runtime+": not installed")
			continue
		}
		p := &podman{global: append(podmanGlobal(dir, "overlay"), "--runtime", runtime), runOpts: opts}
		out, err := p.run("run", "--rm", "--network", "none", image, "--version")
		if err == nil {
			return p, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v: %s", runtime, err, strings.TrimSpace(out)))
	}
	return nil, fmt.Errorf("podman runs no container here:\n%s", strings.Join(errs, "\n"))
}

func (p *podman) run(args ...string) (string, error) {
	out, err := p.cmd(args...).CombinedOutput()
	return string(out), err
}

// TestImagesRunVersion runs each image's entrypoint with --version as the
// manifests run it: read-only root, no capabilities, the image's user.
func TestImagesRunVersion(t *testing.T) {
	p := podmanWithImages(t)
	_, o := built(t)
	for _, c := range components {
		t.Run(c.Name, func(t *testing.T) {
			out, err := p.run("run", "--rm", "--read-only", "--cap-drop", "all", "--network", "none", loaded[c.Name], "--version")
			if err != nil || !strings.Contains(out, o.Version) || !strings.Contains(out, c.Binary) {
				t.Fatalf("%s --version: %v\n%s", c.Name, err, out)
			}
			out, err = p.run("run", "--rm", "--entrypoint", "/bin/id", loaded[c.Name])
			if err == nil {
				t.Errorf("the image has a shell tool /bin/id: %s", out)
			}
		})
	}
}

// TestForwarderImageNFT runs the forwarder image's nft: it must load all
// its libraries and program a table in the container's own network
// namespace with only NET_ADMIN, as the forwarder does through knftables.
func TestForwarderImageNFT(t *testing.T) {
	p := podmanWithImages(t)
	ref := loaded["forwarder"]
	out, err := p.run("run", "--rm", "--read-only", "--network", "none", "--cap-drop", "all", "--entrypoint", "/usr/sbin/nft", ref, "--version")
	if err != nil || !strings.HasPrefix(out, "nftables v") {
		t.Fatalf("nft --version: %v\n%s", err, out)
	}
	cmd := p.cmd("run", "--rm", "-i", "--read-only", "--network", "none", "--cap-drop", "all", "--cap-add", "NET_ADMIN",
		"--entrypoint", "/bin/sh", ref, "-c", "true")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("the forwarder image has a shell: %s", out)
	}
	cmd = p.cmd("run", "--rm", "-i", "--read-only", "--network", "none", "--cap-drop", "all", "--cap-add", "NET_ADMIN",
		"--entrypoint", "/usr/sbin/nft", ref, "--echo", "-f", "-")
	cmd.Stdin = strings.NewReader("table inet portico_imagetest {\n chain c { type filter hook input priority 0; tcp dport 80 counter accept; }\n}\n")
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "tcp dport 80 counter") {
		t.Fatalf("nft -f in the image: %v\n%s", err, b)
	}
}

// kubeconfigFor writes cfg (certificates embedded) as a kubeconfig file
// that the image's non-root user can read.
func kubeconfigFor(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "portico-image-kubeconfig-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("not reached within %s: %v", d, err)
}

// container is a detached podman container stopped at cleanup; its exit
// must be clean and its log free of panics.
func startContainer(t *testing.T, p *podman, args ...string) string {
	t.Helper()
	name := fmt.Sprintf("portico-imagetest-%d", time.Now().UnixNano())
	out, err := p.run(append([]string{"run", "--detach", "--name", name}, args...)...)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop, err := p.run("stop", "--time", "20", name)
		if err != nil {
			t.Errorf("podman stop: %v\n%s", err, stop)
		}
		code, _ := p.run("inspect", "--format", "{{.State.ExitCode}}", name)
		logs, _ := p.run("logs", name)
		if strings.TrimSpace(code) != "0" || strings.Contains(logs, "panic:") {
			t.Errorf("%s exited %s:\n%s", name, strings.TrimSpace(code), tail(logs, 30))
		}
		_, _ = p.run("rm", "--force", name)
	})
	return name
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestOperatorImageOnControlPlane runs the operator image against a real
// kube-apiserver (host network, the operator's generated RBAC, read-only
// root, no capabilities, user 65532): it must become ready, win the
// leader election and give a memory-class Service an address.
func TestOperatorImageOnControlPlane(t *testing.T) {
	p := podmanWithImages(t)
	env := testenv.Start(t)
	cfg, err := env.OperatorConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := kubeconfigFor(t, cfg)
	port := freePort(t)
	name := startContainer(t, p, "--network", "host", "--read-only", "--cap-drop", "all",
		"-v", filepath.Dir(kc)+":/kube:ro", loaded["operator"],
		"--kubeconfig", "/kube/kubeconfig", "--providers", "memory", "--memory-ipv4-range", "10.128.0.0/16",
		"--leader-elect", "--leader-election-namespace", "portico-system",
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", port))
	eventually(t, 60*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err != nil {
			logs, _ := p.run("logs", "--tail", "5", name)
			return fmt.Errorf("%w (logs: %s)", err, logs)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "image-test"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(providers.Class("memory")),
			Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if err := env.Client.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		var got corev1.Service
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(svc), &got); err != nil {
			return err
		}
		if len(got.Status.LoadBalancer.Ingress) == 0 {
			return errors.New("no address yet")
		}
		return nil
	})
}

// TestForwarderImageInNodeNamespace runs the forwarder image on each node
// of the netns lab (podman with the node's network namespace as its host
// network, NET_ADMIN and NET_RAW only, read-only root, as the DaemonSet
// does) with the operator's local backend: the client reaches a pod
// through the Service's address, so the image's nft programmed the node.
func TestForwarderImageInNodeNamespace(t *testing.T) {
	p := podmanWithImages(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the netns lab needs iproute2")
	}
	logDir, err := os.MkdirTemp("", "portico-image-lab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(logDir) })
	// podman runs outside the node's namespace (ip netns exec remounts /sys
	// without the cgroup hierarchies the runtime needs) and gives the
	// container the node's network namespace, as hostNetwork does.
	fwd := func(netns string, args []string) *exec.Cmd {
		return p.cmd(append([]string{"run", "--rm", "--name", "portico-imagetest-" + netns,
			"--network", "ns:/run/netns/" + netns, "--read-only", "--cap-drop", "all", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
			"-v", "/tmp:/tmp:ro", "-v", logDir + ":" + logDir + ":ro", loaded["forwarder"]}, args...)...)
	}
	c, err := cluster.Start(cluster.Options{Nodes: 2, ForwarderCommand: fwd, LogDir: logDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(n.Log)
				t.Logf("forwarder %s:\n%s", n.Name, tail(string(b), 30))
			}
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := c.StartOperator(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "img"}},
		&lbv1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "img"}, Spec: lbv1.IPPoolSpec{Addresses: []string{"10.88.0.200-10.88.0.210"}}},
	} {
		if err := c.Env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pod, err := c.AddPod(c.Nodes[1], "img", "web-1", 8080, map[string]string{"app": "web"})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "img", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(model.LocalClass),
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if err := c.Env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	var addr netip.AddrPort
	eventually(t, 60*time.Second, func() error {
		var got corev1.Service
		if err := c.Env.Client.Get(ctx, client.ObjectKeyFromObject(svc), &got); err != nil {
			return err
		}
		if len(got.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no address yet (conditions %v)", got.Status.Conditions)
		}
		addr = netip.AddrPortFrom(netip.MustParseAddr(got.Status.LoadBalancer.Ingress[0].IP), 80)
		return nil
	})
	eventually(t, 60*time.Second, func() error {
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
		r, err := dptest.AskTCP(c.Client, addr, time.Second)
		if err != nil {
			return err
		}
		if r.Server != pod.Name {
			return fmt.Errorf("reply from %s, want %s", r.Server, pod.Name)
		}
		return nil
	})
	// The traffic went through the image's nft: the node that announces
	// the address holds Portico's table.
	var tables []string
	for _, n := range c.Nodes {
		out, _ := n.Host.Command("nft", "list", "tables").CombinedOutput()
		tables = append(tables, n.Name+": "+strings.TrimSpace(string(out)))
	}
	if !strings.Contains(strings.Join(tables, "\n"), "portico") {
		t.Errorf("no node holds a portico nftables table: %v", tables)
	}
}
