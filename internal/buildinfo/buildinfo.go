// Package buildinfo reads what the Go toolchain stamped into the running
// binary: the module version and the VCS revision it was built from
// (runtime/debug.ReadBuildInfo). `sealgate version` prints it and the
// configuration checks use the commit time as a lower bound of the clock.
package buildinfo

import (
	"runtime/debug"
	"time"
)

// Info is the build of a binary. Fields the toolchain did not stamp are
// zero: a binary built outside a git checkout, or with -buildvcs=false,
// has no revision; `go test` binaries have neither revision nor version.
type Info struct {
	// Module is the main module's path ("github.com/sealgate/sealgate").
	Module string
	// Version is the main module's version: a tag, a pseudo-version
	// ("v0.0.0-20260301100000-0123456789ab", "+dirty" when the tree had
	// uncommitted changes) or "(devel)".
	Version string
	// Revision is the VCS commit (full hash); Time its commit time;
	// Modified reports uncommitted changes in the tree at build time.
	Revision string
	Time     time.Time
	Modified bool
	// GoVersion is the toolchain ("go1.26.8"); Platform GOOS/GOARCH.
	GoVersion string
	Platform  string
}

// Read returns the build of the running binary.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{}
	}
	return From(bi)
}

// From extracts the Info from bi.
func From(bi *debug.BuildInfo) Info {
	i := Info{Module: bi.Main.Path, Version: bi.Main.Version, GoVersion: bi.GoVersion}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				i.Time = t
			}
		case "vcs.modified":
			i.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		i.Platform = goos + "/" + goarch
	}
	return i
}
