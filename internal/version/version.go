// Package version holds the build version, set with
// -ldflags "-X github.com/portico-lb/portico/internal/version.Version=...".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version; "dev" for untagged builds.
var Version = "dev"

// String describes the binary: "<name> <version> (<go version>, <commit>)".
func String(name string) string {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				commit = s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("%s %s (%s, %s/%s, commit %s)", name, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, commit)
}
