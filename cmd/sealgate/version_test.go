package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/buildinfo"
)

func TestPrintVersion(t *testing.T) {
	var b bytes.Buffer
	printVersion(&b, buildinfo.Info{Version: "v0.0.0-20260301100000-0123456789ab+dirty", Revision: "0123456789abcdef0123456789abcdef01234567",
		Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Modified: true, GoVersion: "go1.26.8", Platform: "linux/amd64"})
	want := "sealgate v0.0.0-20260301100000-0123456789ab+dirty\n" +
		"リビジョン / revision: 0123456789abcdef0123456789abcdef01234567 (2026-03-01T10:00:00Z, 未コミットの変更を含む / with uncommitted changes)\n" +
		"Go: go1.26.8 linux/amd64\n"
	if b.String() != want {
		t.Fatalf("printVersion:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printVersion(&b, buildinfo.Info{Version: "(devel)", GoVersion: "go1.26.8", Platform: "linux/amd64"})
	if !strings.Contains(b.String(), "unknown (built without VCS information)") {
		t.Fatalf("printVersion without VCS:\n%s", b.String())
	}
}
