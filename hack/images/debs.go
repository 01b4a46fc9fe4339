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
)

// deb is one Debian package brought into an image.
type deb struct {
	Name    string
	Version string
	Arch    string
	Control string // the package's control stanza (dpkg-deb -f)
	File    string
}

// fetchDeb returns pkg for arch ("all" for architecture-independent
// packages), downloading the candidate version with apt-get into cache
// unless that exact file is there already.
func fetchDeb(cache, pkg, arch string) (*deb, error) {
	spec := pkg
	if arch != "all" {
		spec = pkg + ":" + arch
	}
	out, err := exec.Command("apt-cache", "show", "--no-all-versions", spec).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache show %s: %w (for a foreign architecture run: dpkg --add-architecture %s && apt-get update)", spec, err, arch)
	}
	version := field(string(out), "Version")
	if version == "" {
		return nil, fmt.Errorf("apt-cache show %s: no Version (run apt-get update)", spec)
	}
	dir := filepath.Join(cache, arch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(dir, fmt.Sprintf("%s_%s_%s.deb", pkg, strings.ReplaceAll(version, ":", "%3a"), arch))
	if _, err := os.Stat(file); err != nil {
		cmd := exec.Command("apt-get", "download", "-q", spec+"="+version)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download %s=%s: %w\n%s", spec, version, err, out)
		}
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("apt-get download %s=%s left no %s", spec, version, file)
		}
	}
	control, err := exec.Command("dpkg-deb", "-f", file).Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb -f %s: %w", file, err)
	}
	d := &deb{Name: pkg, Version: version, Arch: arch, Control: string(control), File: file}
	if got := field(d.Control, "Version"); got != version {
		return nil, fmt.Errorf("%s: version %q, want %q", file, got, version)
	}
	return d, nil
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
