package testenv_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portico-lb/portico/internal/testenv"
)

// TestProcess proves the one helper every test uses to run a Portico binary:
// a panic, a fatal error or a panic that controller-runtime recovered and
// logged is reported while the process still runs; an exit nobody asked for
// is reported; a process stopped by SIGTERM is healthy; and with CleanExit a
// non-zero exit after SIGTERM is not.
func TestProcess(t *testing.T) {
	sh := func(script string) *exec.Cmd { return exec.Command("sh", "-c", script) }
	for _, tc := range []struct {
		name, script string
		clean        bool
		stop         bool
		want         string // substring of the error; "" means healthy
	}{
		{name: "panic", script: "echo 'panic: runtime error: index out of range'; echo 'goroutine 1 [running]:'; exec sleep 60", stop: true, want: "panicked"},
		{name: "fatal error", script: "echo 'fatal error: concurrent map writes'; exec sleep 60", stop: true, want: "panicked"},
		{name: "recovered panic in a reconciler", script: `echo '{"level":"error","msg":"Observed a panic in reconciler: boom"}'; exec sleep 60`, stop: true, want: "panicked"},
		{name: "exits on its own", script: "echo started; exit 0", want: "exited unexpectedly"},
		{name: "crashes on its own", script: "exit 2", want: "exited unexpectedly"},
		{name: "stopped", script: "echo 'a log line that mentions no panic'; exec sleep 60", stop: true},
		{name: "unclean exit after SIGTERM", script: "trap 'exit 3' TERM; while :; do sleep 0.1; done", clean: true, stop: true, want: "did not exit cleanly"},
		{name: "clean exit after SIGTERM", script: "trap 'exit 0' TERM; while :; do sleep 0.1; done", clean: true, stop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := testenv.StartProcess(tc.name, sh(tc.script), testenv.ProcessOptions{CleanExit: tc.clean})
			if err != nil {
				t.Fatal(err)
			}
			if tc.stop {
				time.Sleep(300 * time.Millisecond) // let the script write and set its trap
				err = p.Stop()
			} else {
				select {
				case <-p.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("the process did not exit")
				}
				err = p.Err()
				_ = p.Stop()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("healthy process reported: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestProcessKill: a crash a test plays with Kill is no error, even with
// CleanExit.
func TestProcessKill(t *testing.T) {
	p, err := testenv.StartProcess("killed", exec.Command("sleep", "60"), testenv.ProcessOptions{CleanExit: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := p.Err(); err != nil {
		t.Fatalf("after Kill: %v", err)
	}
}

// TestProcessReportsAPanicWhileRunning: Err sees a panic before the process
// ends, so a test can fail as soon as a forwarder logs one.
func TestProcessReportsAPanicWhileRunning(t *testing.T) {
	p, err := testenv.StartProcess("panics later", exec.Command("sh", "-c", "sleep 0.2; echo 'panic: boom'; exec sleep 60"), testenv.ProcessOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop() //nolint:errcheck // the panic is the point
	if err := p.Err(); err != nil {
		t.Fatalf("before the panic: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if p.Err() == nil {
			return errRunning
		}
		return nil
	})
}

var errRunning = errors.New("no panic reported yet")

func TestRunChecked(t *testing.T) {
	if _, err := testenv.RunChecked("ok", exec.Command("sh", "-c", "echo fine")); err != nil {
		t.Fatalf("healthy one-shot: %v", err)
	}
	// A panic is an error even when the exit status hides it.
	if _, err := testenv.RunChecked("panics", exec.Command("sh", "-c", "echo 'panic: boom'; exit 0")); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("panic in output: got %v", err)
	}
	if _, err := testenv.RunChecked("fails", exec.Command("sh", "-c", "exit 1")); err == nil {
		t.Fatal("non-zero exit: no error")
	}
}
