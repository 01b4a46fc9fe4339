package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuGroups puts processes into CPU cgroups weighted as the kubelet weights
// pods by their CPU requests, so the stress phase shows what a node's
// scheduler does to a forwarder that requested little CPU next to a pod that
// requested a lot. cgroup v1 (cpu.shares = milliCPU*1024/1000) and v2
// (cpu.weight, the kubelet's conversion from shares) are supported.
type cpuGroups struct {
	root string
	v2   bool
}

// newCPUGroups creates the benchmark's parent cgroup, the node, or returns an
// error saying why it cannot. The parent weighs as much against the rest of
// the machine as procs busy processes and three forwarders and this process would outside
// any cgroup, so other load on a shared machine dilutes the node no more than
// without cgroups; inside it, the pods' requests set the weights.
func newCPUGroups(id string, procs int) (*cpuGroups, error) {
	shares := 1024 * (procs + 4)
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if !strings.Contains(" "+strings.TrimSpace(string(b))+" ", " cpu ") {
			return nil, errors.New("the cgroup v2 root has no cpu controller")
		}
		root := filepath.Join("/sys/fs/cgroup", "portico-bench-"+id)
		if err := os.Mkdir(root, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+cpu"), 0o644); err != nil {
			_ = os.Remove(root)
			return nil, fmt.Errorf("enabling the cpu controller: %w", err)
		}
		g := &cpuGroups{root: root, v2: true}
		return g, g.weigh(root, shares)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.shares"); err != nil {
		return nil, errors.New("no cgroup cpu controller found")
	}
	root := filepath.Join("/sys/fs/cgroup/cpu", "portico-bench-"+id)
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	g := &cpuGroups{root: root}
	return g, g.weigh(root, shares)
}

// weigh sets dir's CPU weight from cgroup v1 shares.
func (g *cpuGroups) weigh(dir string, shares int) error {
	file, value := "cpu.shares", shares
	if g.v2 {
		file, value = "cpu.weight", min(1+((shares-2)*9999)/262142, 10000)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.Itoa(value)), 0o644); err != nil {
		return fmt.Errorf("setting %s of %s: %w", file, dir, err)
	}
	return nil
}

// add moves pid into the child cgroup name, created with the weight of a
// pod requesting milliCPU.
func (g *cpuGroups) add(name string, milliCPU, pid int) error {
	dir := filepath.Join(g.root, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := g.weigh(dir, max(milliCPU*1024/1000, 2)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("moving %d into %s: %w", pid, dir, err)
	}
	return nil
}

// close moves any process left back to the root and removes the cgroups.
func (g *cpuGroups) close() {
	parent := filepath.Dir(g.root)
	entries, _ := os.ReadDir(g.root)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(g.root, e.Name())
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, pid := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(parent, "cgroup.procs"), []byte(pid), 0o644)
			}
		}
		_ = os.Remove(dir)
	}
	_ = os.Remove(g.root)
}
