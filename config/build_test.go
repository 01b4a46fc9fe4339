package config_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portico-lb/portico/internal/testenv"
)

// TestStaticBuilds proves what the Dockerfile relies on without a Docker
// engine: "make build" (CGO disabled, the Dockerfile's flags) yields static
// binaries that run in an empty image.
func TestStaticBuilds(t *testing.T) {
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build -trimpath", "-s -w -X github.com/portico-lb/portico/internal/version.Version="} {
		if !strings.Contains(string(dockerfile), want) || !strings.Contains(strings.ReplaceAll(string(makefile), "$(GO)", "go"), want) {
			t.Errorf("Dockerfile and Makefile do not share the build flag %q", want)
		}
	}

	dir := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "build", "BIN="+dir, "VERSION=v0.0.0-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, name := range []string{"portico-operator", "portico-forwarder", "kubectl-lb"} {
		path := filepath.Join(dir, name)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a dynamic loader (PT_INTERP): not static", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s links %v: not static", name, libs)
		}
		f.Close()
		out, err := testenv.RunChecked(name+" --version", exec.Command(path, "--version"))
		if err != nil || !strings.Contains(string(out), "v0.0.0-test") {
			t.Errorf("%s --version: %v %q, want the build version", name, err, out)
		}
	}
}
