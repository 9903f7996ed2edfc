package buildinfo

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestFrom(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/sealgate/sealgate", Version: "v0.0.0-20260301100000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-03-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := From(bi)
	want := Info{
		Module: "github.com/sealgate/sealgate", Version: "v0.0.0-20260301100000-0123456789ab+dirty",
		Revision: "0123456789abcdef0123456789abcdef01234567", Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC),
		Modified: true, GoVersion: "go1.26.8", Platform: "linux/amd64",
	}
	if got != want {
		t.Fatalf("From = %+v\nwant   %+v", got, want)
	}
}

func TestFromWithoutVCS(t *testing.T) {
	got := From(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sealgate/sealgate", Version: "(devel)"}})
	if got.Revision != "" || !got.Time.IsZero() || got.Modified || got.Platform != "" {
		t.Fatalf("From without VCS settings = %+v, want no revision, time, modification or platform", got)
	}
}
