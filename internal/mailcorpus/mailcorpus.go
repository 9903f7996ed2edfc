// Package mailcorpus finds, in the Go module cache, the messages of the test suites of public
// mail-parsing libraries (enmime's valid, low-quality and broken mail, mailpit's fixtures),
// for sealgate's corpus tests: real-world mail, much of it malformed, that must flow without
// any part leaving in clear. The messages are read where `go mod download` put them and are
// never copied into this repository; scripts/test downloads the modules (outside this module,
// so go.mod does not change).
package mailcorpus

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Module is one module whose test data is read.
type Module struct {
	Path, Version string
	Globs         []string // relative to the module's directory
}

// Modules returns the modules of the corpus.
func Modules() []Module {
	return []Module{
		{Path: "github.com/jhillyerd/enmime", Version: "v1.3.0", Globs: []string{
			"testdata/mail/*.raw", "testdata/low-quality/*.raw", "testdata/parts/*.raw", "testdata/encode/*.raw", "dsn/testdata/*.raw"}},
		{Path: "github.com/axllent/mailpit", Version: "v1.33.1", Globs: []string{"internal/storage/testdata/*.eml"}},
	}
}

// DownloadCommand is the command that brings the corpus into the module cache.
func DownloadCommand() string {
	var args []string
	for _, m := range Modules() {
		args = append(args, m.Path+"@"+m.Version)
	}
	return "(cd $(mktemp -d) && go mod download " + strings.Join(args, " ") + ")"
}

// Files returns the corpus's message files, sorted within each module; an error names what
// is missing and how to get it.
func Files() ([]string, error) {
	cache := os.Getenv("GOMODCACHE")
	if cache == "" {
		out, err := exec.Command("go", "env", "GOMODCACHE").Output()
		if err != nil {
			return nil, fmt.Errorf("failed to find the module cache: %w", err)
		}
		cache = strings.TrimSpace(string(out))
	}
	var files []string
	for _, m := range Modules() {
		dir := filepath.Join(cache, filepath.FromSlash(m.Path)+"@"+m.Version)
		if _, err := os.Stat(dir); err != nil {
			return nil, errors.New("mail corpus " + m.Path + "@" + m.Version + " is not in the module cache; run: " + DownloadCommand())
		}
		var mine []string
		for _, g := range m.Globs {
			found, err := filepath.Glob(filepath.Join(dir, g))
			if err != nil {
				return nil, err
			}
			mine = append(mine, found...)
		}
		sort.Strings(mine)
		files = append(files, mine...)
	}
	return files, nil
}
