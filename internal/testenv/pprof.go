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
	return SaveProfileFrom(ctx, http.DefaultClient, "http://"+addr+"/debug/pprof/"+profile, path)
}

// SaveProfileFrom fetches the profile at url through hc (e.g. a client of
// kube-apiserver's /debug/pprof, which wants credentials) and writes it to
// path.
func SaveProfileFrom(ctx context.Context, hc *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
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
