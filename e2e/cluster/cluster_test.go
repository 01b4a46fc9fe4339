package cluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portico-lb/portico/e2e/cluster"
	"github.com/portico-lb/portico/internal/testenv"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
}

// fakeForwarder writes a script that stands in for portico-forwarder.
func fakeForwarder(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-forwarder")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestClusterReportsForwarderFailures: a forwarder that panics, or that
// exits without being stopped, makes Err and Close fail; one that runs and
// stops cleanly does not.
func TestClusterReportsForwarderFailures(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name, script, want string
	}{
		{"panics", "echo 'panic: assignment to entry in nil map'; echo 'goroutine 1 [running]:'; exec sleep 600", "panicked"},
		{"exits", "echo 'giving up'; exit 1", "exited unexpectedly"},
		{"healthy", "trap 'exit 0' TERM; while :; do sleep 0.1; done", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := cluster.Start(cluster.Options{Nodes: 1, ForwarderBin: fakeForwarder(t, tc.script), LogDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" {
				testenv.Eventually(t, 10*time.Second, func() error {
					if c.Err() == nil {
						return fmt.Errorf("no failure reported yet")
					}
					return nil
				})
			} else {
				time.Sleep(time.Second)
				if err := c.Err(); err != nil {
					t.Errorf("healthy forwarder reported: %v", err)
				}
			}
			err = c.Close()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Close: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Close returned %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestClusterNodes: lab nodes stay Ready past the node lifecycle
// controller's grace period on the lab's heartbeat and become Unknown when
// it stops; kwok nodes become Ready without any forwarder.
func TestClusterNodes(t *testing.T) {
	needRoot(t)
	c, err := cluster.Start(cluster.Options{Nodes: 2, KwokNodes: 2, LogDir: t.TempDir(),
		ForwarderBin: fakeForwarder(t, "trap 'exit 0' TERM; while :; do sleep 0.1; done")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	ready := func(name string, want corev1.ConditionStatus) error {
		n := &corev1.Node{}
		if err := c.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, n); err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == want {
				return nil
			}
		}
		return fmt.Errorf("node %s: conditions %v, want Ready=%s", name, n.Status.Conditions, want)
	}
	for _, name := range []string{"kwok-1", "kwok-2"} {
		testenv.Eventually(t, 30*time.Second, func() error { return ready(name, corev1.ConditionTrue) })
	}
	time.Sleep(testenv.NodeMonitorGracePeriod + 3*time.Second)
	for _, name := range []string{c.Nodes[0].Name, c.Nodes[1].Name, "kwok-1", "kwok-2"} {
		if err := ready(name, corev1.ConditionTrue); err != nil {
			t.Fatalf("past the grace period: %v", err)
		}
	}
	c.StopHeartbeat(c.Nodes[1])
	testenv.Eventually(t, testenv.NodeMonitorGracePeriod+20*time.Second, func() error { return ready(c.Nodes[1].Name, corev1.ConditionUnknown) })
	if err := ready(c.Nodes[0].Name, corev1.ConditionTrue); err != nil {
		t.Fatalf("the other node: %v", err)
	}
	c.StartHeartbeat(c.Nodes[1])
	testenv.Eventually(t, 10*time.Second, func() error { return ready(c.Nodes[1].Name, corev1.ConditionTrue) })
}
