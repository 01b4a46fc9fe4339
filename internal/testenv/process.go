package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashSignature matches what a Go program prints when it crashes
// ("panic: ...", "fatal error: ...", a running goroutine's trace) and what
// controller-runtime and client-go log when they recover a panic in a
// reconciler or handler, which would otherwise pass silently.
var crashSignature = regexp.MustCompile(`(?m)^panic: |^fatal error: |^goroutine \d+ \[running\]|Observed a panic`)

// Crashed returns the first line of output that shows a panic or a fatal
// error, or "" when there is none.
func Crashed(output []byte) string {
	loc := crashSignature.FindIndex(output)
	if loc == nil {
		return ""
	}
	start := bytes.LastIndexByte(output[:loc[0]], '\n') + 1
	end := bytes.IndexByte(output[start:], '\n')
	if end < 0 {
		return string(output[start:])
	}
	return string(output[start : start+end])
}

// Process is a long-running child process started by a test, the lab, the
// demo or a benchmark: portico-operator, portico-forwarder, or a control
// plane component. Its stdout and stderr go to Log. It is healthy while it
// runs and shows no panic; Err reports a panic at any time, and an exit that
// Stop did not ask for.
type Process struct {
	// Name identifies the process in errors ("forwarder node-n1").
	Name string
	// Log is the file that holds its output.
	Log string

	cmd  *exec.Cmd
	done chan struct{}

	mu       sync.Mutex
	stopping bool
	killed   bool
	exitErr  error
	// tempLog: StartProcess made Log and removes it after a healthy Stop.
	tempLog bool
	logGone bool
	// cleanExit: after Stop, anything but exit status 0 is an error (Portico's
	// binaries exit 0 on SIGTERM).
	cleanExit bool
}

// ProcessOptions shape StartProcess.
type ProcessOptions struct {
	// Log is the output file, appended to (default: a temporary file that
	// Stop removes unless the process failed).
	Log string
	// CleanExit makes a non-zero exit after Stop an error. Portico's binaries
	// promise it; other components may exit non-zero on SIGTERM.
	CleanExit bool
}

// StartProcess starts cmd (not yet started; Stdout and Stderr must be unset)
// with its output captured in a log file.
func StartProcess(name string, cmd *exec.Cmd, opts ProcessOptions) (*Process, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, fmt.Errorf("%s: output already redirected; StartProcess captures it", name)
	}
	var f *os.File
	var err error
	if opts.Log == "" {
		f, err = os.CreateTemp("", "portico-"+strings.ReplaceAll(name, " ", "-")+"-*.log")
	} else {
		f, err = os.OpenFile(opts.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// The process dies with the test binary or program that started it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, Log: f.Name(), cmd: cmd, done: make(chan struct{}), cleanExit: opts.CleanExit, tempLog: opts.Log == ""}
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		if !p.stopping {
			p.exitErr = fmt.Errorf("%s exited unexpectedly (%v); log %s", name, exitStatus(err), p.Log)
		} else if err != nil && p.cleanExit && !p.killed {
			p.exitErr = fmt.Errorf("%s did not exit cleanly on SIGTERM (%v); log %s", name, err, p.Log)
		}
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM, kills the process after 10s, waits for it, and
// returns Err.
func (p *Process) Stop() error {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return p.finish()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.finish()
}

// finish returns Err of the exited process and removes a healthy temporary
// log.
func (p *Process) finish() error {
	err := p.Err()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && p.tempLog && !p.logGone {
		_ = os.Remove(p.Log)
		p.logGone = true
	}
	return err
}

// Kill kills the process with SIGKILL, as a test does to play a crash, and
// waits for it; that exit is not an error, a panic before it still is.
func (p *Process) Kill() {
	p.mu.Lock()
	p.stopping, p.killed = true, true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Err reports a panic or fatal error in the output so far, an exit that
// Stop did not ask for, and (with CleanExit) an unclean exit after Stop.
func (p *Process) Err() error {
	var errs []error
	p.mu.Lock()
	errs = append(errs, p.exitErr)
	gone := p.logGone
	p.mu.Unlock()
	if gone { // removed by a healthy Stop; nothing can have been written since
		return errors.Join(errs...)
	}
	out, err := os.ReadFile(p.Log)
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: reading log: %w", p.Name, err))
	} else if line := Crashed(out); line != "" {
		errs = append(errs, fmt.Errorf("%s panicked: %q; log %s", p.Name, line, p.Log))
	}
	return errors.Join(errs...)
}

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CheckProcess fails t at its end if p panicked or exited unexpectedly,
// and stops p first if the test did not.
func CheckProcess(t testing.TB, p *Process) {
	t.Helper()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("%v\n%s", err, p.Tail(40))
		}
	})
}

// StartChecked starts cmd with StartProcess and fails t if it panics or
// exits before the test ends (CheckProcess).
func StartChecked(t testing.TB, name string, cmd *exec.Cmd, opts ProcessOptions) *Process {
	t.Helper()
	if opts.Log == "" {
		opts.Log = fmt.Sprintf("%s/%s.log", t.TempDir(), strings.ReplaceAll(name, " ", "-"))
	}
	p, err := StartProcess(name, cmd, opts)
	if err != nil {
		t.Fatal(err)
	}
	CheckProcess(t, p)
	return p
}

// RunChecked runs a one-shot command (portico-forwarder --cleanup, a
// --version) to completion and returns its combined output; a non-zero exit
// or a panic in the output is an error.
func RunChecked(name string, cmd *exec.Cmd) ([]byte, error) {
	out, err := cmd.CombinedOutput()
	if line := Crashed(out); line != "" {
		return out, errors.Join(err, fmt.Errorf("%s panicked: %q", name, line))
	}
	if err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
