package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// workerEnv marks the process that runs the demo under supervise.
const workerEnv = "PORTICO_DEMO_WORKER"

// stopSignal asks the worker to tear the demo down and exit. It is not
// SIGINT or SIGTERM: internal/testenv answers those, in any process that
// runs a control plane, by stopping it at once and dying of the signal again,
// as an interrupted test binary should; the demo would then end with a
// failure status after all.
const stopSignal = syscall.SIGUSR1

// supervise runs the demo (this program with args) in a worker process of
// its own process group, relays SIGINT and SIGTERM to the worker alone, and
// returns the worker's exit code. It relays them as stopSignal.
//
// Ctrl-C sends SIGINT to the terminal's whole foreground process group.
// Were the control plane and the forwarders in it, they would die of that
// SIGINT before the demo could stop them, and the demo would report them as
// failed and exit 1 after a clean teardown. In their own group they are
// stopped by the teardown instead. When the demo runs on a terminal, the
// supervisor also takes the terminal's foreground for a group of its own,
// so that Ctrl-C does not reach make either: make demo then exits with the
// demo's status, 0 after a clean teardown.
func supervise(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	restore := takeTerminal(os.Stdin)
	defer restore()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case <-sig:
			_ = cmd.Process.Signal(stopSignal)
		case err := <-done:
			if err != nil {
				fmt.Fprintln(os.Stderr, "demo:", err)
			}
			return exitCode(err)
		}
	}
}

// exitCode is a finished worker's exit code; a worker killed by a signal
// failed.
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	}
	return 1
}

// takeTerminal moves this process into a process group of its own and
// makes that group the terminal's foreground, so that the terminal's
// signals reach this process only; the returned function gives the
// terminal back. Without a terminal, or when this process is not in the
// foreground, it changes nothing.
func takeTerminal(tty *os.File) func() {
	fd := int(tty.Fd())
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || fg != syscall.Getpgrp() {
		return func() {}
	}
	// Setting the foreground from outside it raises SIGTTOU.
	signal.Ignore(syscall.SIGTTOU)
	if err := syscall.Setpgid(0, 0); err != nil {
		return func() {}
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, syscall.Getpgrp()); err != nil {
		_ = syscall.Setpgid(0, fg)
		return func() {}
	}
	return func() { _ = unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, fg) }
}
