package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// deb is one Debian package brought into an image.
type deb struct {
	Name    string
	Version string
	Arch    string
	Control string // the package's control stanza (dpkg-deb -f)
	File    string
}

// fetchDebs returns the packages for arch ("all" for architecture-
// independent ones): the candidate version of each, downloaded with one
// apt-get call into cache unless that exact file is there already.
func fetchDebs(cache string, pkgs []string, arch string) ([]*deb, error) {
	// apt-cache reads every package list (seconds): ask once per process.
	key := cache + "|" + arch + "|" + strings.Join(pkgs, ",")
	debMemoMu.Lock()
	defer debMemoMu.Unlock()
	if d, ok := debMemo[key]; ok {
		return d, nil
	}
	debs, err := resolveDebs(cache, pkgs, arch)
	if err == nil {
		debMemo[key] = debs
	}
	return debs, err
}

var (
	debMemoMu sync.Mutex
	debMemo   = map[string][]*deb{}
)

func resolveDebs(cache string, pkgs []string, arch string) ([]*deb, error) {
	specs := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		specs[i] = pkg
		if arch != "all" {
			specs[i] = pkg + ":" + arch
		}
	}
	out, err := exec.Command("apt-cache", append([]string{"show", "--no-all-versions"}, specs...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s: %w (for a foreign architecture run: dpkg --add-architecture %s && apt-get update, or make image-deps)", strings.Join(specs, " "), err, arch)
	}
	versions := map[string]string{}
	for _, stanza := range strings.Split(string(out), "\n\n") {
		if name := field(stanza, "Package"); name != "" {
			versions[name] = field(stanza, "Version")
		}
	}
	dir := filepath.Join(cache, arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	debs := make([]*deb, len(pkgs))
	var missing []string
	for i, pkg := range pkgs {
		version := versions[pkg]
		if version == "" {
			return nil, fmt.Errorf("apt-cache show %s: no version (run apt-get update)", specs[i])
		}
		file := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", pkg, strings.ReplaceAll(version, ":", "%3a"), arch))
		debs[i] = &deb{Name: pkg, Version: version, Arch: arch, File: file}
		if _, err := os.Stat(file); err != nil {
			missing = append(missing, specs[i]+"="+version)
		}
	}
	if len(missing) > 0 {
		cmd := exec.Command("apt-get", append([]string{"download", "-q"}, missing...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download %s: %w\n%s", strings.Join(missing, " "), err, out)
		}
	}
	for _, d := range debs {
		control, err := exec.Command("dpkg-deb", "-f", d.File).Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg-deb -f %s: %w", d.File, err)
		}
		d.Control = string(control)
		if got := field(d.Control, "Version"); got != d.Version {
			return nil, fmt.Errorf("%s: version %q, want %q", d.File, got, d.Version)
		}
	}
	return debs, nil
}

// field returns the first value of a deb822 field.
func field(stanza, name string) string {
	sc := bufio.NewScanner(strings.NewReader(stanza))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// contents returns the package's file system as a tar stream.
func (d *deb) contents() ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", d.File)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", d.File, err, stderr.String())
	}
	return out, nil
}

// keepDebPath drops documentation (but keeps each package's copyright
// file, which its license requires shipping) and other files no program
// in the image reads.
func keepDebPath(p string) bool {
	for _, prefix := range []string{"usr/share/man/", "usr/share/info/", "usr/share/lintian/", "usr/share/locale/", "usr/lib/systemd/", "lib/systemd/"} {
		if strings.HasPrefix(p+"/", prefix) {
			return false
		}
	}
	if rest, ok := strings.CutPrefix(p, "usr/share/doc/"); ok {
		parts := strings.Split(rest, "/")
		return len(parts) == 1 || (len(parts) == 2 && parts[1] == "copyright")
	}
	return true
}

// addDebs puts the packages' files into t and records each package the way
// distroless images do (/var/lib/dpkg/status.d/<name>), where image
// scanners find installed versions.
func addDebs(t *fsTree, debs []*deb) error {
	sorted := append([]*deb(nil), debs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, d := range sorted {
		b, err := d.contents()
		if err != nil {
			return err
		}
		if err := t.addTar(bytes.NewReader(b), keepDebPath); err != nil {
			return fmt.Errorf("%s: %w", d.File, err)
		}
		status := strings.TrimRight(d.Control, "\n")
		status = strings.Replace(status, "\nMaintainer:", "\nStatus: install ok installed\nMaintainer:", 1)
		t.file("var/lib/dpkg/status.d/"+d.Name, 0o644, 0, []byte(status+"\n"))
	}
	return nil
}

// caBundle concatenates the Mozilla roots of the ca-certificates package
// in name order, as update-ca-certificates does for the default
// /etc/ca-certificates.conf (every certificate enabled).
func caBundle(d *deb) (bundle, copyright []byte, err error) {
	b, err := d.contents()
	if err != nil {
		return nil, nil, err
	}
	certs := newTree()
	if err := certs.addTar(bytes.NewReader(b), func(p string) bool {
		return strings.HasPrefix(p, "usr/share/ca-certificates/mozilla/") || p == "usr/share/doc/ca-certificates/copyright"
	}); err != nil {
		return nil, nil, err
	}
	var names []string
	for p, e := range certs.entries {
		if strings.HasSuffix(p, ".crt") && e.hdr.Typeflag == tar.TypeReg {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%s holds no certificates", d.File)
	}
	var buf bytes.Buffer
	for _, n := range names {
		c := certs.entries[n].data
		buf.Write(c)
		if !bytes.HasSuffix(c, []byte("\n")) {
			buf.WriteByte('\n')
		}
	}
	if e := certs.entries["usr/share/doc/ca-certificates/copyright"]; e != nil {
		copyright = e.data
	}
	return buf.Bytes(), copyright, nil
}
