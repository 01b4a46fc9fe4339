package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options say what to build; equal Options on equal sources give equal
// digests.
type Options struct {
	Repo       string // the repository checkout (go build runs there)
	Out        string // output directory
	Cache      string // downloaded Debian packages
	Registry   string // e.g. ghcr.io/portico-lb
	Version    string // the binaries' version and the images' tag
	Revision   string // source commit
	Source     string // source repository URL
	License    string // SPDX expression of Portico's own license
	Distro     string // the Debian release the packages come from, e.g. debian-12
	Epoch      time.Time
	Platforms  []v1.Platform
	Components []component
	Log        func(format string, args ...any)
}

// Result lists what was written.
type Result struct {
	Images []Image
}

// Image is one component's multi-platform image.
type Image struct {
	Component string
	Ref       string // registry/name:version
	Index     v1.Hash
	Layout    string // OCI image layout directory
	Archive   string // the layout as a tar file (oci-archive)
	Platforms []PlatformImage
}

// PlatformImage is the image for one platform.
type PlatformImage struct {
	Platform      v1.Platform
	Digest        v1.Hash
	DockerArchive string // docker save format, for docker load / kind load image-archive
	SBOM          string // SPDX 2.3 JSON
	Debs          []*deb
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Build writes, for each component, an OCI image layout holding an index
// over one image per platform, the layout as a tar archive, a docker
// archive and an SPDX SBOM per platform, and digests.txt.
func Build(o Options) (*Result, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "portico-images-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)

	bins := map[string]string{} // platform string -> directory of the binaries
	for _, p := range o.Platforms {
		dir := filepath.Join(binDir, p.OS+"-"+p.Architecture)
		if err := o.goBuild(p, dir); err != nil {
			return nil, err
		}
		bins[platformString(p)] = dir
	}

	var res Result
	var digests []string
	for _, c := range o.Components {
		img, err := o.buildComponent(c, bins)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		res.Images = append(res.Images, *img)
		digests = append(digests, fmt.Sprintf("%s index %s", img.Ref, img.Index))
		for _, p := range img.Platforms {
			digests = append(digests, fmt.Sprintf("%s %s %s", img.Ref, platformString(p.Platform), p.Digest))
		}
	}
	if err := os.WriteFile(filepath.Join(o.Out, "digests.txt"), []byte(strings.Join(digests, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	return &res, nil
}

// goBuild builds the three binaries for p with "make build"'s flags.
func (o Options) goBuild(p v1.Platform, dir string) error {
	var pkgs []string
	for _, c := range o.Components {
		pkgs = append(pkgs, "./cmd/"+c.Binary)
	}
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w -X github.com/portico-lb/portico/internal/version.Version=" + o.Version, "-o", dir + "/"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = o.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Variant != "" && p.Architecture == "arm" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	o.Log("go build %s for %s", strings.Join(pkgs, " "), platformString(p))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", platformString(p), err, out)
	}
	return nil
}

// debArch is Debian's name of a Go architecture.
func debArch(goarch string) string {
	switch goarch {
	case "arm":
		return "armhf"
	case "386":
		return "i386"
	}
	return goarch
}

func (o Options) labels(c component, debs []*deb) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.licenses":    o.License,
		"org.opencontainers.image.created":     o.Epoch.UTC().Format(time.RFC3339),
		"org.opencontainers.image.title":       "portico-" + strings.TrimPrefix(c.Name, "portico-"),
		"org.opencontainers.image.description": c.Description,
		"org.opencontainers.image.url":         o.Source,
	}
	if len(debs) > 0 {
		var pkgs []string
		for _, d := range debs {
			pkgs = append(pkgs, d.Name+"="+d.Version)
		}
		sort.Strings(pkgs)
		l["dev.portico.debian-packages"] = strings.Join(pkgs, ",")
	}
	return l
}

// baseTree is the empty base: CA roots, passwd/group naming root and
// nonroot (65532), nonroot's home and a sticky /tmp.
func baseTree(ca *deb) (*fsTree, error) {
	bundle, copyright, err := caBundle(ca)
	if err != nil {
		return nil, err
	}
	t := newTree()
	t.file("etc/ssl/certs/ca-certificates.crt", 0o644, 0, bundle)
	if copyright != nil {
		t.file("usr/share/doc/ca-certificates/copyright", 0o644, 0, copyright)
	}
	t.file("etc/passwd", 0o644, 0, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRoot, nonRoot)))
	t.file("etc/group", 0o644, 0, []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRoot)))
	t.file("etc/nsswitch.conf", 0o644, 0, []byte("hosts: files dns\n"))
	t.dir("root", 0o700, 0)
	t.dir("home/nonroot", 0o700, nonRoot)
	t.dir("tmp", 0o1777, 0)
	return t, nil
}

func (o Options) buildComponent(c component, bins map[string]string) (*Image, error) {
	ref := o.Registry + "/" + c.Name + ":" + o.Version
	if _, err := name.ParseReference(ref); err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	cas, err := fetchDebs(o.Cache, []string{"ca-certificates"}, "all")
	if err != nil {
		return nil, err
	}
	ca := cas[0]
	base, err := baseTree(ca)
	if err != nil {
		return nil, err
	}
	baseLayer, err := base.layer(o.Epoch)
	if err != nil {
		return nil, err
	}

	out := &Image{Component: c.Name, Ref: ref,
		Layout: filepath.Join(o.Out, c.Name), Archive: filepath.Join(o.Out, c.Name+".oci.tar")}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		debs := []*deb{ca}
		layers := []mutate.Addendum{{Layer: baseLayer, History: o.history("base: CA roots (ca-certificates " + ca.Version + "), passwd, group")}}
		if len(c.Debs) > 0 {
			t := newTree()
			own, err := fetchDebs(o.Cache, c.Debs, debArch(p.Architecture))
			if err != nil {
				return nil, err
			}
			if err := addDebs(t, own); err != nil {
				return nil, err
			}
			l, err := t.layer(o.Epoch)
			if err != nil {
				return nil, err
			}
			var names []string
			for _, d := range own {
				names = append(names, d.Name)
			}
			layers = append(layers, mutate.Addendum{Layer: l, History: o.history("debian packages: " + strings.Join(names, " "))})
			debs = append(debs, own...)
		}
		binPath := filepath.Join(bins[platformString(p)], c.Binary)
		bin, err := os.ReadFile(binPath)
		if err != nil {
			return nil, err
		}
		bt := newTree()
		bt.file(c.Binary, 0o755, 0, bin)
		bl, err := bt.layer(o.Epoch)
		if err != nil {
			return nil, err
		}
		layers = append(layers, mutate.Addendum{Layer: bl, History: o.history("/" + c.Binary + " " + o.Version)})

		img, err := o.image(c, p, debs, layers)
		if err != nil {
			return nil, err
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, err
		}
		pi := PlatformImage{Platform: p, Digest: digest, Debs: debs}
		stem := filepath.Join(o.Out, c.Name+"-"+p.OS+"-"+p.Architecture)
		pi.DockerArchive = stem + ".tar"
		tag, err := name.NewTag(ref)
		if err != nil {
			return nil, err
		}
		if err := tarball.WriteToFile(pi.DockerArchive, tag, img); err != nil {
			return nil, fmt.Errorf("writing %s: %w", pi.DockerArchive, err)
		}
		pi.SBOM = stem + ".spdx.json"
		sbom, err := o.sbom(c, ref, p, digest, binPath, debs)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(pi.SBOM, sbom, 0o644); err != nil {
			return nil, err
		}
		pp := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pp}})
		out.Platforms = append(out.Platforms, pi)
		o.Log("%s %s %s", ref, platformString(p), digest)
	}
	idx = mutate.Annotations(idx, map[string]string{
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.licenses": o.License,
		"org.opencontainers.image.created":  o.Epoch.UTC().Format(time.RFC3339),
	}).(v1.ImageIndex)
	if out.Index, err = idx.Digest(); err != nil {
		return nil, err
	}
	if err := writeLayout(out.Layout, idx, ref); err != nil {
		return nil, err
	}
	if err := tarDir(out.Layout, out.Archive, o.Epoch); err != nil {
		return nil, err
	}
	o.Log("%s index %s", ref, out.Index)
	return out, nil
}

func (o Options) history(what string) v1.History {
	return v1.History{Created: v1.Time{Time: o.Epoch.UTC()}, CreatedBy: "hack/images: " + what, Comment: "portico"}
}

func (o Options) image(c component, p v1.Platform, debs []*deb, layers []mutate.Addendum) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: o.Epoch.UTC()}
	cf.Author = "The Portico authors"
	cf.Config.Entrypoint = []string{"/" + c.Binary}
	cf.Config.User = c.User
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.Labels = o.labels(c, debs)
	return mutate.ConfigFile(img, cf)
}

// writeLayout replaces dir with an OCI image layout whose index.json names
// idx as ref.
func writeLayout(dir string, idx v1.ImageIndex, ref string) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// tarDir writes dir as a reproducible tar file (an oci-archive).
func tarDir(dir, file string, mtime time.Time) error {
	t := newTree()
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		if fi.IsDir() {
			t.dir(rel, 0o755, 0)
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		t.file(rel, 0o644, 0, b)
		return nil
	})
	if err != nil {
		return err
	}
	b, err := t.tarBytes(mtime)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// prettyJSON is json.MarshalIndent with a final newline.
func prettyJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return buf.Bytes(), err
}
