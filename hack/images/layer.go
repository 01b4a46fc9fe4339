package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fsTree is the content of one image layer, keyed by clean path without the
// leading slash. Its tar form is reproducible: entries sorted by path, one
// fixed modification time, numeric owners only.
type fsTree struct {
	entries map[string]*entry
}

type entry struct {
	hdr  tar.Header
	data []byte
}

func newTree() *fsTree { return &fsTree{entries: map[string]*entry{}} }

func clean(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// dir adds a directory (and its parents).
func (t *fsTree) dir(p string, mode int64, uid int) {
	p = clean(p)
	if p == "" {
		return
	}
	t.parents(p)
	t.entries[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, Uid: uid, Gid: uid}}
}

// file adds a regular file (and its parents).
func (t *fsTree) file(p string, mode int64, uid int, data []byte) {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Uid: uid, Gid: uid, Size: int64(len(data))}, data: data}
}

// parents adds missing parent directories as root-owned 0755.
func (t *fsTree) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.entries[d] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}}
		}
	}
}

// addTar copies a tar stream (dpkg-deb --fsys-tarfile) into the tree,
// keeping mode, owner and link targets and dropping the paths keep refuses.
func (t *fsTree) addTar(r io.Reader, keep func(string) bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := clean(h.Name)
		if p == "" || !keep(p) {
			continue
		}
		n := tar.Header{Name: p, Mode: h.Mode & 0o7777, Uid: h.Uid, Gid: h.Gid, Typeflag: h.Typeflag}
		var data []byte
		switch h.Typeflag {
		case tar.TypeDir:
			n.Name = p + "/"
		case tar.TypeReg:
			if data, err = io.ReadAll(tr); err != nil {
				return err
			}
			n.Size = int64(len(data))
		case tar.TypeSymlink:
			n.Linkname = h.Linkname
		case tar.TypeLink:
			n.Linkname = clean(h.Linkname)
		default:
			return fmt.Errorf("%s: unsupported tar entry type %q", h.Name, h.Typeflag)
		}
		t.parents(p)
		t.entries[p] = &entry{hdr: n, data: data}
	}
}

// tarBytes writes the tree as an uncompressed tar: sorted, every entry
// modified at mtime, no user or group names.
func (t *fsTree) tarBytes(mtime time.Time) ([]byte, error) {
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := t.entries[p]
		h := e.hdr
		h.ModTime = mtime.UTC()
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layer turns the tree into a gzip-compressed OCI layer.
func (t *fsTree) layer(mtime time.Time) (v1.Layer, error) {
	b, err := t.tarBytes(mtime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}
