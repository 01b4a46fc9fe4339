package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
)

// SaveProfile fetches a profile from the Go pprof endpoint at addr
// (host:port, a process started with --pprof-bind-address) and writes it to
// path. profile is the endpoint's path below /debug/pprof/ with its query,
// e.g. "profile?seconds=10" (CPU) or "heap".
func SaveProfile(ctx context.Context, addr, profile, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+profile, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
