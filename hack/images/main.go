// Command images builds Portico's container images without a container
// engine or a registry: for each component (operator, forwarder,
// kubectl-lb) an OCI image layout holding an image index over linux/amd64
// and linux/arm64, that layout as a tar file, a docker archive and an SPDX
// SBOM per platform. Same sources, same Debian packages and same
// SOURCE_DATE_EPOCH give the same digests.
//
// Run it through "make images" (mk/images.mk).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	cache, _ := os.UserCacheDir()
	var (
		o          Options
		platforms  = fs.String("platforms", "linux/amd64,linux/arm64", "Comma-separated platforms.")
		comps      = fs.String("components", "operator,forwarder,kubectl-lb", "Comma-separated images to build.")
		epoch      = fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Seconds since 1970 for every timestamp in the images. Default: $SOURCE_DATE_EPOCH, else the commit time of HEAD.")
		defaultRev = git("rev-parse", "HEAD")
	)
	fs.StringVar(&o.Repo, "repo", ".", "The Portico checkout to build.")
	fs.StringVar(&o.Out, "out", "bin/images", "Output directory.")
	fs.StringVar(&o.Cache, "deb-cache", cache+"/portico/debs", "Directory of downloaded Debian packages.")
	fs.StringVar(&o.Registry, "registry", "ghcr.io/portico-lb", "Registry and namespace in the image references.")
	fs.StringVar(&o.Version, "version", "dev", "Version: the binaries' --version and the images' tag.")
	fs.StringVar(&o.Revision, "revision", defaultRev, "Source revision (label org.opencontainers.image.revision).")
	fs.StringVar(&o.Source, "source", "https://github.com/portico-lb/portico", "Source repository URL.")
	fs.StringVar(&o.License, "license", "Apache-2.0", "SPDX license expression of Portico.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *epoch == "" {
		*epoch = git("log", "-1", "--format=%ct")
	}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("--source-date-epoch %q: %w", *epoch, err)
	}
	o.Epoch = time.Unix(secs, 0).UTC()
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		if p.OS != "linux" {
			return fmt.Errorf("platform %s: Portico's images are linux only", s)
		}
		o.Platforms = append(o.Platforms, *p)
	}
	for _, n := range strings.Split(*comps, ",") {
		c, ok := componentNamed(strings.TrimSpace(n))
		if !ok {
			return fmt.Errorf("unknown component %q", n)
		}
		o.Components = append(o.Components, c)
	}
	if o.Distro, err = debianRelease(); err != nil {
		return err
	}
	o.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	start := time.Now()
	if _, err := Build(o); err != nil {
		return err
	}
	o.Log("images written to %s in %s", o.Out, time.Since(start).Round(time.Second))
	return nil
}

func git(args ...string) string {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// debianRelease is the purl distro qualifier of this machine's Debian
// (debian-12), where apt-get takes the packages from.
func debianRelease() (string, error) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "", err
	}
	id, version := "", ""
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case "ID":
			id = v
		case "VERSION_ID":
			version = v
		}
	}
	if id != "debian" || version == "" {
		return "", fmt.Errorf("the forwarder's packages come from Debian's apt; this machine is %q %q", id, version)
	}
	return id + "-" + version, nil
}
