package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"path"
	"sort"
	"strings"
)

// missingELFDeps lists, for every ELF executable and shared library in t,
// the program interpreter and DT_NEEDED libraries that the dynamic loader
// would not find in t: what "ldd" would call "not found", checked without
// running anything, so for any architecture. Search path: the Debian
// multiarch directories of the loader's default path (no ld.so.cache is
// needed for them) plus DT_RUNPATH/DT_RPATH.
func missingELFDeps(t *fsTree) ([]string, error) {
	var missing []string
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		e := t.entries[p]
		if e.hdr.Typeflag != tar.TypeReg || !bytes.HasPrefix(e.data, []byte(elf.ELFMAG)) {
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(e.data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("%s: PT_INTERP: %w", p, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if _, ok := t.resolve(interp); !ok {
				missing = append(missing, fmt.Sprintf("%s: interpreter %s", p, interp))
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		dirs := libDirs(f.Machine)
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			if vals, _ := f.DynString(tag); len(vals) > 0 {
				for _, v := range strings.Split(strings.Join(vals, ":"), ":") {
					dirs = append(dirs, strings.ReplaceAll(v, "$ORIGIN", "/"+path.Dir(p)))
				}
			}
		}
		for _, lib := range needed {
			found := false
			for _, d := range dirs {
				if _, ok := t.resolve(path.Join(d, lib)); ok {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, fmt.Sprintf("%s: %s", p, lib))
			}
		}
		f.Close()
	}
	return missing, nil
}

func libDirs(m elf.Machine) []string {
	triplet := map[elf.Machine]string{elf.EM_X86_64: "x86_64-linux-gnu", elf.EM_AARCH64: "aarch64-linux-gnu"}[m]
	return []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib", "/usr/lib"}
}

// resolve follows symbolic links (in every path component) to a regular
// file in t.
func (t *fsTree) resolve(p string) (*entry, bool) {
	for hops := 0; hops < 40; hops++ {
		p = clean(p)
		parts := strings.Split(p, "/")
		resolved := ""
		redirected := false
		for i, part := range parts {
			cur := path.Join(resolved, part)
			e, ok := t.entries[cur]
			if !ok {
				return nil, false
			}
			if e.hdr.Typeflag == tar.TypeSymlink {
				target := e.hdr.Linkname
				if !strings.HasPrefix(target, "/") {
					target = path.Join("/", resolved, target)
				}
				p = path.Join(append([]string{target}, parts[i+1:]...)...)
				redirected = true
				break
			}
			if e.hdr.Typeflag == tar.TypeLink {
				cur = e.hdr.Linkname
			}
			resolved = cur
		}
		if !redirected {
			e := t.entries[resolved]
			return e, e != nil && e.hdr.Typeflag == tar.TypeReg
		}
	}
	return nil, false
}
