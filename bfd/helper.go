package bfd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// HelperArg, as the first argument of portico-forwarder, makes it run as its
// own BFD helper (ServeHelper) instead of as the forwarder.
const HelperArg = "bfd-helper"

// Runner runs a node's BFD sessions; Manager runs them in this process,
// Helper in a child process.
type Runner interface {
	// Add starts a session with peer unless one runs.
	Add(peer netip.Addr, cfg Config) error
	// Remove ends the session with peer, telling it AdminDown.
	Remove(peer netip.Addr)
	// State is the session's state (ok false: no session with peer).
	State(peer netip.Addr) (st State, ok bool)
	// Run drives the sessions until ctx ends, then ends them with
	// AdminDown.
	Run(ctx context.Context) error
}

var (
	_ Runner = (*Manager)(nil)
	_ Runner = (*Helper)(nil)
)

// Helper runs the BFD sessions in a child process (the forwarder's own
// binary with HelperArg) and follows their states.
//
// BFD's timers must not depend on how busy the forwarder is. Inside the
// forwarder, the sender shared its Go runtime with the informers, the BGP
// speaker and the data-plane sync: under load their garbage collections
// stopped every goroutine for up to 130 ms at a time, and on a loaded machine
// the sender's packets went out 300-850 ms apart, so routers declared
// live nodes down (e2e/bgpbench: dozens of "Cease/BFD Down" per run, each
// costing the node's routes for seconds). The helper holds only the BFD
// sessions: its heap is small, it rarely collects garbage, and it keeps the
// intervals while the forwarder is busy, as FRR keeps BFD in its own bfdd.
//
// BFD proves that the node and its path forward traffic; the kernel data
// plane does the forwarding, not the forwarder's process. When the forwarder
// exits the helper's standard input closes: after Run's end it first tells
// every peer AdminDown; after a crash it falls silent, so routers detect the
// failure within their detection time.
type Helper struct {
	// Locals are the node's addresses to run BFD from (Manager.Locals).
	Locals []netip.Addr
	Log    logr.Logger
	// Command makes the child's command, which must serve ServeHelper on
	// its standard input and output; by default this executable with
	// HelperArg and --local for each of Locals.
	Command func() (*exec.Cmd, error)

	mu     sync.Mutex
	wanted map[netip.Addr]Config
	states map[netip.Addr]State
	enc    *json.Encoder // the running child's standard input, or nil
}

// helperMsg is one line between forwarder and helper: a command
// (Op add, remove, stop) to the helper, a state change (State) or an error
// back.
type helperMsg struct {
	Op    string        `json:"op,omitempty"`
	Peer  netip.Addr    `json:"peer"`
	Tx    time.Duration `json:"tx,omitempty"`
	Rx    time.Duration `json:"rx,omitempty"`
	Mult  uint8         `json:"mult,omitempty"`
	State string        `json:"state,omitempty"`
	Error string        `json:"error,omitempty"`
}

// Add asks the helper for a session with peer.
func (h *Helper) Add(peer netip.Addr, cfg Config) error {
	peer = peer.Unmap().WithZone("")
	if err := checkPeer(peer); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.wanted == nil {
		h.wanted, h.states = map[netip.Addr]Config{}, map[netip.Addr]State{}
	}
	if _, ok := h.wanted[peer]; ok {
		return nil
	}
	h.wanted[peer], h.states[peer] = cfg, Down
	h.send(addMsg(peer, cfg))
	return nil
}

func addMsg(peer netip.Addr, cfg Config) helperMsg {
	return helperMsg{Op: "add", Peer: peer, Tx: cfg.DesiredMinTx, Rx: cfg.RequiredMinRx, Mult: cfg.DetectMult}
}

// send writes a command to the running child (h.mu held); without one, Run
// sends every wanted session when it starts the next.
func (h *Helper) send(m helperMsg) {
	if h.enc == nil {
		return
	}
	if err := h.enc.Encode(m); err != nil {
		h.Log.Error(err, "Writing to the BFD helper")
	}
}

// Remove ends the session with peer (AdminDown).
func (h *Helper) Remove(peer netip.Addr) {
	peer = peer.Unmap().WithZone("")
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.wanted[peer]; !ok {
		return
	}
	delete(h.wanted, peer)
	delete(h.states, peer)
	h.send(helperMsg{Op: "remove", Peer: peer})
}

// State is the session's state as the helper last reported it.
func (h *Helper) State(peer netip.Addr) (State, bool) {
	peer = peer.Unmap().WithZone("")
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.states[peer]
	return st, ok
}

// Run keeps the helper running until ctx ends (restarting it when it exits
// on its own: after a second, doubling up to 30 s while it keeps failing at
// once), then stops it: its sessions send AdminDown.
func (h *Helper) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		started := time.Now()
		err := h.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		h.Log.Error(err, "BFD helper exited; restarting", "after", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (h *Helper) command() (*exec.Cmd, error) {
	if h.Command != nil {
		return h.Command()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{HelperArg}
	for _, l := range h.Locals {
		args = append(args, "--local", l.String())
	}
	return exec.Command(self, args...), nil
}

func (h *Helper) runOnce(ctx context.Context) error {
	cmd, err := h.command()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the BFD helper: %w", err)
	}
	h.mu.Lock()
	h.enc = json.NewEncoder(in)
	for peer, cfg := range h.wanted {
		h.send(addMsg(peer, cfg))
	}
	h.mu.Unlock()
	read := make(chan error, 1)
	go func() { read <- h.read(out) }()
	var result error
	select {
	case <-ctx.Done():
		h.mu.Lock()
		h.send(helperMsg{Op: "stop"})
		h.mu.Unlock()
		select {
		case <-read:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-read
		}
	case result = <-read:
	}
	h.mu.Lock()
	h.enc = nil
	for peer := range h.states {
		h.states[peer] = Down
	}
	h.mu.Unlock()
	_ = in.Close()
	if err := cmd.Wait(); err != nil && result == nil {
		result = err
	}
	if result == nil {
		result = errors.New("the BFD helper closed its output")
	}
	return result
}

// read follows the helper's reports until its output ends.
func (h *Helper) read(out io.Reader) error {
	dec := json.NewDecoder(bufio.NewReader(out))
	for {
		var m helperMsg
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading the BFD helper: %w", err)
		}
		h.mu.Lock()
		if _, ok := h.wanted[m.Peer]; ok && m.State != "" {
			h.states[m.Peer] = parseState(m.State)
		}
		h.mu.Unlock()
		if m.Error != "" {
			h.Log.Error(errors.New(m.Error), "BFD helper", "peer", m.Peer.String())
		}
	}
}

func parseState(s string) State {
	for st := AdminDown; st <= Up; st++ {
		if st.String() == s {
			return st
		}
	}
	return Down
}

// ServeHelper is the helper's side: it runs a Manager on locals, takes
// commands from in and reports state changes on out. A stop command ends
// the sessions with AdminDown; the end of in (the forwarder is gone) ends
// ServeHelper without telling the peers, as a crash would.
func ServeHelper(locals []netip.Addr, in io.Reader, out io.Writer, log logr.Logger) error {
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	report := func(m helperMsg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	m := &Manager{Locals: locals, Log: log, OnChange: func(peer netip.Addr, st State) {
		report(helperMsg{Peer: peer, State: st.String()})
	}}
	// Run's context ends only on stop: after the end of in the caller
	// exits at once, and the peers hear nothing.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-stop
			cancel()
		}()
		done <- m.Run(ctx)
	}()
	cmds := make(chan helperMsg)
	readErr := make(chan error, 1)
	go func() {
		dec := json.NewDecoder(bufio.NewReader(in))
		for {
			var c helperMsg
			if err := dec.Decode(&c); err != nil {
				readErr <- err
				return
			}
			cmds <- c
		}
	}()
	for {
		select {
		case err := <-done: // the listener failed
			if err == nil {
				err = errors.New("BFD stopped")
			}
			return err
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading commands: %w", err)
		case c := <-cmds:
			switch c.Op {
			case "add":
				if err := m.Add(c.Peer, Config{DesiredMinTx: c.Tx, RequiredMinRx: c.Rx, DetectMult: c.Mult}); err != nil {
					report(helperMsg{Peer: c.Peer, Error: err.Error()})
				}
			case "remove":
				m.Remove(c.Peer)
			case "stop":
				close(stop)
				return <-done
			}
		}
	}
}
