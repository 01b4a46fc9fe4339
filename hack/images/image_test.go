package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The tests build the images for this machine's platform (all platforms
// with PORTICO_IMAGE_PLATFORMS=linux/amd64,linux/arm64) once per test run;
// TestReproducible builds them a second time.

func testOptions(t *testing.T, out string) Options {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("images need apt-get and dpkg-deb (Debian) for the forwarder's packages")
	}
	platforms := "linux/" + runtime.GOARCH
	if p := os.Getenv("PORTICO_IMAGE_PLATFORMS"); p != "" {
		platforms = p
	}
	o := Options{Repo: "../..", Out: out, Cache: filepath.Join(os.TempDir(), "portico-images-debs"),
		Registry: "ghcr.io/portico-lb", Version: "v0.0.0-imagetest", Revision: "0123456789abcdef0123456789abcdef01234567",
		Source: "https://github.com/portico-lb/portico", License: "Apache-2.0", Distro: "debian-12",
		Epoch: time.Unix(1700000000, 0).UTC(), Components: components,
		Log: func(format string, args ...any) { t.Logf(format, args...) }}
	for _, s := range strings.Split(platforms, ",") {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			t.Fatal(err)
		}
		o.Platforms = append(o.Platforms, *p)
	}
	return o
}

var (
	sharedOnce sync.Once
	shared     *Result
	sharedOpts Options
	sharedErr  error
)

// built returns the images of this test run, building them on first use.
func built(t *testing.T) (*Result, Options) {
	t.Helper()
	dir, err := os.MkdirTemp("", "portico-images-test-")
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, dir)
	sharedOnce.Do(func() {
		start := time.Now()
		sharedOpts = o
		shared, sharedErr = Build(o)
		t.Logf("built the images in %s", time.Since(start).Round(time.Second))
	})
	if sharedOpts.Out != dir {
		os.RemoveAll(dir)
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared, sharedOpts
}

func TestMain(m *testing.M) {
	code := m.Run()
	podmanCleanup()
	if sharedOpts.Out != "" {
		os.RemoveAll(sharedOpts.Out)
	}
	os.Exit(code)
}

// TestReproducible builds the images twice from the same inputs into two
// directories: every digest, archive and SBOM must be byte-identical.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the images twice")
	}
	first, o := built(t)
	second := o
	second.Out = t.TempDir()
	res, err := Build(second)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(o.Out, "digests.txt"))
	b, _ := os.ReadFile(filepath.Join(second.Out, "digests.txt"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("digests differ between two builds of the same inputs:\n%s\n---\n%s", a, b)
	}
	t.Logf("two builds, same digests:\n%s", a)
	for i, img := range first.Images {
		files := []string{img.Archive}
		for j, p := range img.Platforms {
			files = append(files, p.DockerArchive, p.SBOM)
			if p.Digest != res.Images[i].Platforms[j].Digest {
				t.Errorf("%s %s: %s then %s", img.Ref, platformString(p.Platform), p.Digest, res.Images[i].Platforms[j].Digest)
			}
		}
		for _, f := range files {
			x, _ := os.ReadFile(f)
			y, _ := os.ReadFile(filepath.Join(second.Out, filepath.Base(f)))
			if len(x) == 0 || !bytes.Equal(x, y) {
				t.Errorf("%s differs between two builds", filepath.Base(f))
			}
		}
	}

	// A different timestamp is a different input: the digests must move,
	// or the epoch is not what the images carry.
	third := o
	third.Out = t.TempDir()
	third.Epoch = o.Epoch.Add(time.Hour)
	third.Components = []component{components[2]}
	res3, err := Build(third)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Images[0].Index == first.Images[2].Index {
		t.Errorf("%s: same index digest for another SOURCE_DATE_EPOCH", res3.Images[0].Ref)
	}
}

// flatten returns the file system an image unpacks to.
func flatten(t *testing.T, img v1.Image) *fsTree {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tree := newTree()
	if err := tree.addTar(rc, func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestImageContents opens each image from its OCI layout and checks what
// the component needs at run time and what a user needs to know about it.
func TestImageContents(t *testing.T) {
	res, o := built(t)
	for _, img := range res.Images {
		c, _ := componentNamed(img.Component)
		t.Run(img.Component, func(t *testing.T) {
			idx, err := layout.ImageIndexFromPath(img.Layout)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != img.Ref {
				t.Fatalf("layout index.json names %v, want one index named %s", im.Manifests, img.Ref)
			}
			inner, err := idx.ImageIndex(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			mf, err := inner.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(mf.Manifests) != len(o.Platforms) {
				t.Fatalf("index has %d manifests, want one per platform %v", len(mf.Manifests), o.Platforms)
			}
			for i, desc := range mf.Manifests {
				p := img.Platforms[i]
				if desc.Platform == nil || desc.Platform.Architecture != p.Platform.Architecture || desc.Digest != p.Digest {
					t.Errorf("index entry %d: %v %s, want %s %s", i, desc.Platform, desc.Digest, platformString(p.Platform), p.Digest)
				}
				image, err := inner.Image(desc.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, c, o, image, p)
			}
		})
	}
}

func checkImage(t *testing.T, c component, o Options, img v1.Image, p PlatformImage) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != p.Platform.Architecture || cf.OS != "linux" {
		t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, platformString(p.Platform))
	}
	if !cf.Created.Time.Equal(o.Epoch) {
		t.Errorf("created %s, want the epoch %s", cf.Created.Time, o.Epoch)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.licenses": o.License,
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if want := []string{"/" + c.Binary}; !slices.Equal(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %v, want %v", cf.Config.Entrypoint, want)
	}
	if cf.Config.User != c.User {
		t.Errorf("user %q, want %q", cf.Config.User, c.User)
	}

	fs := flatten(t, img)
	bin, ok := fs.resolve(c.Binary)
	if !ok || bin.hdr.Mode&0o111 == 0 {
		t.Errorf("/%s missing or not executable", c.Binary)
	}
	ca, ok := fs.resolve("etc/ssl/certs/ca-certificates.crt")
	if !ok {
		t.Error("no /etc/ssl/certs/ca-certificates.crt")
	} else if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(ca.data) || strings.Count(string(ca.data), "BEGIN CERTIFICATE") < 100 {
		t.Errorf("the CA bundle holds %d certificates, want Mozilla's roots", strings.Count(string(ca.data), "BEGIN CERTIFICATE"))
	}
	if passwd, ok := fs.resolve("etc/passwd"); !ok || !strings.Contains(string(passwd.data), fmt.Sprintf(":%d:%d:", nonRoot, nonRoot)) {
		t.Errorf("/etc/passwd does not name the non-root user %d", nonRoot)
	}
	if tmp := fs.entries["tmp"]; tmp == nil || tmp.hdr.Mode != 0o1777 {
		t.Error("no sticky world-writable /tmp")
	}
	missing, err := missingELFDeps(fs)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("the dynamic loader would not find:\n%s", strings.Join(missing, "\n"))
	}
	if len(c.Debs) > 0 {
		if _, ok := fs.resolve("usr/sbin/nft"); !ok {
			t.Error("no /usr/sbin/nft")
		}
		for _, d := range c.Debs {
			status, ok := fs.resolve("var/lib/dpkg/status.d/" + d)
			if !ok || !strings.Contains(string(status.data), "Package: "+d+"\n") {
				t.Errorf("no dpkg status record of %s", d)
			}
			if _, ok := fs.entries["usr/share/doc/"+d+"/copyright"]; !ok {
				if _, ok := fs.resolve("usr/share/doc/" + d + "/copyright"); !ok {
					t.Errorf("no copyright file of %s", d)
				}
			}
		}
		if !strings.Contains(cf.Config.Labels["dev.portico.debian-packages"], "nftables=") {
			t.Errorf("label dev.portico.debian-packages = %q, want the nftables version", cf.Config.Labels["dev.portico.debian-packages"])
		}
	}
	checkSBOM(t, c, p)
}

func checkSBOM(t *testing.T, c component, p PlatformImage) {
	t.Helper()
	b, err := os.ReadFile(p.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDocument
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	purls := map[string]bool{}
	ids := map[string]bool{}
	for _, pkg := range doc.Packages {
		if ids[pkg.SPDXID] {
			t.Errorf("SBOM: SPDXID %s twice", pkg.SPDXID)
		}
		ids[pkg.SPDXID] = true
		for _, r := range pkg.ExternalRefs {
			purls[strings.SplitN(r.ReferenceLocator, "@", 2)[0]] = true
		}
	}
	want := []string{"pkg:golang/github.com/portico-lb/portico", "pkg:golang/stdlib", "pkg:deb/debian/ca-certificates"}
	if c.Name != "kubectl-lb" {
		want = append(want, "pkg:golang/k8s.io/client-go", "pkg:golang/sigs.k8s.io/controller-runtime")
	}
	for _, d := range c.Debs {
		want = append(want, "pkg:deb/debian/"+d)
	}
	for _, w := range want {
		if !purls[w] {
			t.Errorf("SBOM %s lists no %s", filepath.Base(p.SBOM), w)
		}
	}
	if doc.Packages[0].Checksums[0].ChecksumValue != p.Digest.Hex {
		t.Errorf("SBOM describes %s, want the image %s", doc.Packages[0].Checksums[0].ChecksumValue, p.Digest)
	}
	for _, r := range doc.Relationships {
		if !ids[r.Related] {
			t.Errorf("SBOM relationship to unknown %s", r.Related)
		}
	}
}

// TestForwarderPackagesEveryArch checks, without building Go, that the
// forwarder's Debian packages carry every library nft loads on each
// architecture the images are built for.
func TestForwarderPackagesEveryArch(t *testing.T) {
	o := testOptions(t, t.TempDir())
	fwd, _ := componentNamed("forwarder")
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			if arch != runtime.GOARCH {
				if err := exec.Command("apt-cache", "show", "--no-all-versions", "libc6:"+arch).Run(); err != nil {
					t.Skipf("apt has no %s packages (dpkg --add-architecture %s && apt-get update; .ci/run does it)", arch, arch)
				}
			}
			debs, err := fetchDebs(o.Cache, fwd.Debs, arch)
			if err != nil {
				t.Fatal(err)
			}
			tree := newTree()
			if err := addDebs(tree, debs); err != nil {
				t.Fatal(err)
			}
			missing, err := missingELFDeps(tree)
			if err != nil {
				t.Fatal(err)
			}
			if len(missing) > 0 {
				t.Errorf("missing:\n%s", strings.Join(missing, "\n"))
			}
			if _, ok := tree.resolve("usr/sbin/nft"); !ok {
				t.Error("no usr/sbin/nft")
			}
			// Dropping one library must be caught: the check can fail.
			short := newTree()
			if err := addDebs(short, slices.DeleteFunc(slices.Clone(debs), func(d *deb) bool { return d.Name == "libjansson4" })); err != nil {
				t.Fatal(err)
			}
			if m, _ := missingELFDeps(short); !slices.ContainsFunc(m, func(s string) bool { return strings.HasSuffix(s, "libjansson.so.4") }) {
				t.Errorf("without libjansson4 the check finds only %v", m)
			}
		})
	}
}

// TestLayerTarIsSorted checks the layer writer's reproducibility rules.
func TestLayerTarIsSorted(t *testing.T) {
	tree := newTree()
	tree.file("b/z", 0o644, 0, []byte("z"))
	tree.file("a", 0o755, 0, []byte("a"))
	tree.dir("b/c", 0o700, nonRoot)
	epoch := time.Unix(1, 0)
	b, err := tree.tarBytes(epoch)
	if err != nil {
		t.Fatal(err)
	}
	back := newTree()
	if err := back.addTar(bytes.NewReader(b), func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := newTarReader(b)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(epoch) || h.Uname != "" {
			t.Errorf("%s: mtime %s uname %q", h.Name, h.ModTime, h.Uname)
		}
	}
	if want := []string{"a", "b/", "b/c/", "b/z"}; !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
	if back.entries["b/c"].hdr.Uid != nonRoot {
		t.Error("owner lost")
	}
}

func newTarReader(b []byte) *tar.Reader { return tar.NewReader(bytes.NewReader(b)) }
