package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type workflow struct {
	On map[string]any `json:"on"`
	// YAML 1.1 (sigs.k8s.io/yaml) reads the key "on" as true.
	OnYAML11 map[string]any `json:"true"`
	Jobs     map[string]struct {
		Container any `json:"container"`
		Steps     []struct {
			Name string `json:"name"`
			Uses string `json:"uses"`
			Run  string `json:"run"`
		} `json:"steps"`
	} `json:"jobs"`
	Permissions map[string]string `json:"permissions"`
}

// makeTargets returns the targets of every "make" command in a shell
// script: the words after make that are neither VAR=value nor options.
func makeTargets(script string) []string {
	var targets []string
	for _, cmd := range strings.FieldsFunc(script, func(r rune) bool { return r == '\n' || r == ';' || r == '&' || r == '|' }) {
		words := strings.Fields(cmd)
		for len(words) > 0 && strings.Contains(words[0], "=") { // VAR=value make ...
			words = words[1:]
		}
		if len(words) == 0 || words[0] != "make" {
			continue
		}
		for _, arg := range words[1:] {
			if !strings.HasPrefix(arg, "-") && !strings.Contains(arg, "=") {
				targets = append(targets, arg)
			}
		}
	}
	return targets
}

// TestReleaseWorkflow checks the release workflow: triggered by tags, every
// build step a make target that exists (make -n succeeds without running
// anything), and the images built, pushed and signed.
func TestReleaseWorkflow(t *testing.T) {
	b, err := os.ReadFile("../../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	if wf.On == nil {
		wf.On = wf.OnYAML11
	}
	push, _ := wf.On["push"].(map[string]any)
	if push == nil || push["tags"] == nil {
		t.Errorf("release workflow is not triggered by pushed tags: on = %v", wf.On)
	}
	if wf.Permissions["id-token"] != "write" || wf.Permissions["packages"] != "write" {
		t.Errorf("permissions %v: keyless signing needs id-token: write, ghcr.io packages: write", wf.Permissions)
	}
	seen := map[string]bool{}
	for name, job := range wf.Jobs {
		for _, step := range job.Steps {
			if step.Run == "" {
				continue
			}
			targets := makeTargets(step.Run)
			for _, target := range targets {
				seen[target] = true
				cmd := exec.Command("make", "-n", "-C", "../..", target, "VERSION=v0.0.0-workflowtest", "HELM=helm")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("job %s step %q: make %s: %v\n%s", name, step.Name, target, err, out)
				}
			}
			if len(targets) == 0 && !strings.HasPrefix(step.Run, "apt-get ") && !strings.HasPrefix(step.Run, "git config ") {
				t.Errorf("job %s step %q runs %q, not a make target", name, step.Name, step.Run)
			}
		}
	}
	for _, want := range []string{"images", "test-images", "push-images", "sign-images", "push-chart", "release-binaries"} {
		if !seen[want] {
			t.Errorf("the release workflow never runs make %s", want)
		}
	}
}

func TestMakeTargets(t *testing.T) {
	got := makeTargets("make chart HELM=helm\napt-get install make git && make -s images push-images\nV=1 make x\necho make")
	if want := []string{"chart", "images", "push-images", "x"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("makeTargets = %v, want %v", got, want)
	}
	// A target that does not exist fails make -n: the check can fail.
	if err := exec.Command("make", "-n", "-C", "../..", "no-such-target-portico").Run(); err == nil {
		t.Error("make -n accepts a target that does not exist")
	}
}
