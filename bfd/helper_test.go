package bfd

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
)

// The test binary plays two more roles, chosen by environment: a node
// (a forwarder's BFD, in its own process or in a helper) and the helper.
const (
	roleEnv  = "PORTICO_BFD_TEST_ROLE"
	localEnv = "PORTICO_BFD_TEST_LOCAL"
	peerEnv  = "PORTICO_BFD_TEST_PEER"
)

var testCfg = Config{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}

func TestMain(m *testing.M) {
	if os.Getenv(netnsEnv) != "" {
		if err := setupNetns(); err != nil {
			fmt.Fprintln(os.Stderr, "setting up the network namespace:", err)
			os.Exit(1)
		}
	}
	switch os.Getenv(roleEnv) {
	case "helper":
		if err := ServeHelper([]netip.Addr{netip.MustParseAddr(os.Getenv(localEnv))}, os.Stdin, os.Stdout, logr.Discard()); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case "node-inprocess", "node-helper":
		os.Exit(runNode(os.Getenv(roleEnv) == "node-helper"))
	}
	os.Exit(m.Run())
}

// runNode runs one BFD session to the peer, as the forwarder does, until
// its standard input ends.
func runNode(helper bool) int {
	local := netip.MustParseAddr(os.Getenv(localEnv))
	var r Runner = &Manager{Locals: []netip.Addr{local}, Log: logr.Discard()}
	if helper {
		r = &Helper{Locals: []netip.Addr{local}, Log: logr.Discard(), Command: func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), roleEnv+"=helper")
			return cmd, nil
		}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := r.Add(netip.MustParseAddr(os.Getenv(peerEnv)), testCfg); err != nil {
		return 1
	}
	if err := r.Run(ctx); err != nil {
		return 1
	}
	return 0
}

// TestHelperKeepsTimeWhileForwarderStalls: the node's forwarder process
// gets no CPU for a second (SIGSTOP; in production: its garbage
// collections and a loaded machine, which made FRR declare live nodes down).
// With BFD inside the forwarder the peer's session goes Down within the
// detection time (300 ms); with the helper it stays Up, and the helper
// still follows the forwarder's commands afterwards (AdminDown when it
// stops).
func TestHelperKeepsTimeWhileForwarderStalls(t *testing.T) {
	for _, tc := range []struct {
		role   string
		stayUp bool
	}{
		{"node-inprocess", false},
		{"node-helper", true},
	} {
		t.Run(tc.role, func(t *testing.T) {
			node, router := netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")
			peer := &Manager{Locals: []netip.Addr{router}, Log: testr.New(t)}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := peer.Run(ctx); err != nil {
					t.Error(err)
				}
			}()
			defer func() {
				cancel()
				<-done
			}()
			if err := peer.Add(node, testCfg); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), roleEnv+"="+tc.role, localEnv+"="+node.String(), peerEnv+"="+router.String())
			cmd.Stderr = os.Stderr
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGCONT)
				_ = stdin.Close()
				if err := cmd.Wait(); err != nil {
					t.Errorf("node process: %v", err)
				}
			}()
			waitFor(t, peer, node, Up, 5*time.Second)
			// Both ends Up at the fast rate: the peer's detection time is
			// 3 x 100 ms (while the node is still Init it is 3 x 1 s).
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				peer.mu.Lock()
				d := peer.sessions[node].s.DetectionTime()
				peer.mu.Unlock()
				if d == 300*time.Millisecond {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("peer's detection time %s, want 300ms", d)
				}
			}

			if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			wentDown := false
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				if st, _ := peer.State(node); st != Up {
					wentDown = true
				}
			}
			if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if wentDown == tc.stayUp {
				t.Fatalf("session went down while the forwarder was stopped: %v, want %v", wentDown, !tc.stayUp)
			}
			if !tc.stayUp {
				return
			}
			// The forwarder stops: the helper says AdminDown, which the peer
			// hears as "neighbor signalled down".
			_ = stdin.Close()
			waitFor(t, peer, node, Down, 5*time.Second)
			peer.mu.Lock()
			diag := peer.sessions[node].s.diag
			peer.mu.Unlock()
			if diag != DiagNeighborSignalled {
				t.Errorf("peer's diagnostic %d, want %d (AdminDown heard)", diag, DiagNeighborSignalled)
			}
		})
	}
}

func waitFor(t *testing.T, m *Manager, peer netip.Addr, want State, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if st, _ := m.State(peer); st == want {
			return
		}
		if time.Now().After(deadline) {
			st, _ := m.State(peer)
			t.Fatalf("session with %s is %s, want %s", peer, st, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
