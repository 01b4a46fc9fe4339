package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary plays the demo's three parts, chosen by the environment:
// the supervisor (what make runs), the worker (the demo itself) and one of
// the worker's children (a control plane component or a forwarder).
const roleEnv = "DEMO_TEST_ROLE"

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(workerEnv) != "":
		os.Exit(fakeDemo())
	case os.Getenv(roleEnv) == "supervisor":
		os.Exit(supervise(nil))
	case os.Getenv(roleEnv) == "component":
		// A component stops cleanly on SIGTERM; SIGINT kills it, as the
		// default action does.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeDemo is the demo's run in miniature: it starts a component in its
// own process group, writes the pids to $DEMO_TEST_PIDS, and on stopSignal
// stops the component with SIGTERM; a component that died before that is a
// failure, as cluster.Close reports it. Like the real demo, it dies of
// SIGINT and SIGTERM (internal/testenv's handler).
func fakeDemo() int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, stopSignal)
	exe, _ := os.Executable()
	c := exec.Command(exe)
	c.Env = append(os.Environ(), roleEnv+"=component", workerEnv+"=")
	if err := c.Start(); err != nil {
		return 1
	}
	// What internal/testenv does on SIGINT and SIGTERM in a process that
	// runs a control plane: stop it and die of the signal.
	abort := make(chan os.Signal, 1)
	signal.Notify(abort, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-abort
		_ = c.Process.Kill()
		signal.Reset(s)
		_ = syscall.Kill(os.Getpid(), s.(syscall.Signal))
	}()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	pids := fmt.Sprintf("%d %d", os.Getpid(), c.Process.Pid)
	if err := os.WriteFile(os.Getenv("DEMO_TEST_PIDS"), []byte(pids), 0o644); err != nil {
		return 1
	}
	select {
	case err := <-done:
		fmt.Fprintln(os.Stderr, "component exited unexpectedly:", err)
		return 1
	case <-sig:
	}
	time.Sleep(200 * time.Millisecond) // let a signal to the whole group land, as Ctrl-C's does
	_ = c.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "component exited unexpectedly:", err)
		return 1
	}
	return 0
}

// TestCtrlCExitsZero does to the supervisor what Ctrl-C does: SIGINT to
// its whole process group (the terminal's foreground group). The demo's
// components must not receive it; the demo stops them and the supervisor
// exits 0.
func TestCtrlCExitsZero(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=supervisor", "DEMO_TEST_PIDS="+pidFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the "foreground group" of the test
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []string
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) != 2 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the demo did not start its component: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		pids = strings.Fields(string(b))
	}
	component, _ := strconv.Atoi(pids[1])
	t.Cleanup(func() { _ = syscall.Kill(component, syscall.SIGKILL) })

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	wait := make(chan error, 1)
	go func() { wait <- cmd.Wait() }()
	select {
	case err := <-wait:
		var exit *exec.ExitError
		if errors.As(err, &exit) || err != nil {
			t.Errorf("after Ctrl-C and a clean teardown the demo exited with %v, want 0\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the demo did not exit within 10s of Ctrl-C\n%s", out.String())
	}
}

func TestExitCode(t *testing.T) {
	if got := exitCode(nil); got != 0 {
		t.Errorf("exitCode(nil) = %d", got)
	}
	err := exec.Command("sh", "-c", "exit 3").Run()
	if got := exitCode(err); got != 3 {
		t.Errorf("exit 3: %d", got)
	}
	err = exec.Command("sh", "-c", "kill -INT $$").Run()
	if got := exitCode(err); got != 1 {
		t.Errorf("killed by a signal: %d, want 1", got)
	}
}
