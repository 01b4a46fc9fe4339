package forwarder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/portico-lb/portico/announce"
)

func TestOptions(t *testing.T) {
	tests := []struct {
		args    []string
		static  bool
		wantErr string
	}{
		{args: []string{"--node-name=n1", "--heartbeat-key-file=/k"}},
		{args: []string{"--node-name=n1", "--heartbeat-key-file=/k", "--heartbeat-address=10.0.0.1", "--static-address=10.0.0.9", "--peer=n2=10.0.0.2", "--peer=n3=fd00::3"}, static: true},
		{args: nil, wantErr: "--node-name"},
		// No key: refuse to start, unless told to run insecure.
		{args: []string{"--node-name=n1"}, wantErr: "--heartbeat-key-file is required"},
		{args: []string{"--node-name=n1", "--heartbeat-insecure"}},
		{args: []string{"--node-name=n1", "--heartbeat-insecure", "--heartbeat-key-file=/k"}, wantErr: "exclude each other"},
		{args: []string{"--node-name=n1", "--heartbeat-key-file=/k", "--static-address=10.0.0.9"}, wantErr: "--heartbeat-address"},
		{args: []string{"--node-name=n1", "--quorum-after=300ms"}, wantErr: "--quorum-after"},
		{args: []string{"--node-name=n1", "--dead-after=40ms"}, wantErr: "--dead-after"},
		{args: []string{"--node-name=n1", "--peer=n2"}, wantErr: "name=IP"},
		{args: []string{"--node-name=n1", "--peer=n2=banana"}, wantErr: "name=IP"},
		{args: []string{"--node-name=n1", "--static-address=300.1.1.1"}, wantErr: "--static-address"},
		{args: []string{"--node-name=n1", "--heartbeat-address=eth0"}, wantErr: "--heartbeat-address"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("NODE_NAME", "")
			o := DefaultOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error about %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Static() != tc.static {
				t.Errorf("Static() = %v", o.Static())
			}
			in, peers, _ := o.static()
			if tc.static && (len(peers) != 2 || fmt.Sprint(in.ReadyNodes) != "[n1 n2 n3]" || len(in.Addresses) != 1 || peers["n3"].Port() != 7473) {
				t.Errorf("static inputs %+v peers %v", in, peers)
			}
		})
	}
	if d := DefaultOptions(); d.QuorumAfter >= d.DeadAfter || d.DeadAfter > 300*time.Millisecond {
		t.Errorf("defaults %+v break the failover goal or the partition bound", d)
	}
}

// TestWatchKeys: a rotated key file reaches the heartbeat without a restart,
// and a broken one keeps the keys in use.
func TestWatchKeys(t *testing.T) {
	keyReload = 10 * time.Millisecond
	path := filepath.Join(t.TempDir(), "keys")
	write := func(s string) {
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil { // as the kubelet swaps a Secret volume
			t.Fatal(err)
		}
	}
	write("old-key-0123456789abcdef\n")
	old, err := announce.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := announce.NewMembers(announce.MembersConfig{Self: "a", Keys: old})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- watchKeys(path, old, m)(ctx) }()
	defer func() { cancel(); <-done }()

	write("new-key-0123456789abcdef\nold-key-0123456789abcdef\n")
	both, _ := announce.ParseKeys([]byte("new-key-0123456789abcdef\nold-key-0123456789abcdef\n"))
	deadline := time.Now().Add(2 * time.Second)
	for !m.Keys().Equal(both) {
		if time.Now().After(deadline) {
			t.Fatal("the rotated key file was not picked up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	write("short\n")
	time.Sleep(100 * time.Millisecond)
	if !m.Keys().Equal(both) {
		t.Fatal("an invalid key file replaced the keys in use")
	}
}
