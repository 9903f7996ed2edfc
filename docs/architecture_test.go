// Package docs holds the architecture document; its test keeps the
// document's package map true to the code.
package docs

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/sealgate/sealgate/"

// TestPackageMapMatchesImports checks the package map of ARCHITECTURE.md
// against `go list`: every package of the module outside internal/, test/,
// bench/ and the test helpers has a row (its own or its parent's), and a
// row that lists what a package imports lists exactly its imports.
func TestPackageMapMatchesImports(t *testing.T) {
	doc, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := packageMap(t, string(doc))
	imports := listImports(t)
	for pkg := range imports {
		if !documented(rows, pkg) {
			t.Errorf("package %s has no row in the package map of docs/ARCHITECTURE.md", pkg)
		}
	}
	for pkg, listed := range rows {
		if listed == nil {
			continue
		}
		actual, ok := imports[pkg]
		if !ok && pkg == "internal" {
			continue // a folder of helpers, left out of the imports above
		}
		if !ok {
			t.Errorf("the package map names %s, which is not a package of the module", pkg)
			continue
		}
		var want []string
		for _, imp := range actual {
			want = append(want, short(imp))
		}
		var got []string
		for _, l := range listed {
			got = append(got, short(l))
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Errorf("package map row %s lists imports %v; the code imports %v", pkg, got, want)
		}
	}
}

// short names a package the way the map does: by its last element, except
// under storage/ and scan/, where the parent names it.
func short(p string) string {
	if strings.HasPrefix(p, "scan/") {
		return p
	}
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

var (
	cellRE   = regexp.MustCompile("`([a-z/]+)`")
	parensRE = regexp.MustCompile(`\([^)]*\)`)
)

// packageMap returns, for each package named in the first cell of a row of
// the map, the imports its third cell lists — nil where that cell is prose
// ("everything below") or a dash for none.
func packageMap(t *testing.T, doc string) map[string][]string {
	start := strings.Index(doc, "## The package map")
	if start < 0 {
		t.Fatal("docs/ARCHITECTURE.md has no section \"The package map\"")
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(doc[start:], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "package" {
			continue
		}
		names := cellRE.FindAllStringSubmatch(cells[1], -1)
		deps := strings.TrimSpace(parensRE.ReplaceAllString(cells[3], ""))
		var listed []string
		switch {
		case deps == "—":
			listed = []string{}
		case strings.ContainsAny(deps, "`") || strings.Contains(deps, "everything"):
			listed = nil
		default:
			for _, d := range strings.Split(deps, ",") {
				listed = append(listed, strings.TrimSpace(d))
			}
		}
		for _, n := range names {
			pkg := strings.TrimSuffix(n[1], "/")
			if len(names) > 1 {
				rows[pkg] = nil // a row shared by several packages lists none
			} else {
				rows[pkg] = listed
			}
		}
	}
	return rows
}

// documented reports whether pkg or one of its parents has a row.
func documented(rows map[string][]string, pkg string) bool {
	for p := pkg; p != "."; {
		if _, ok := rows[p]; ok {
			return true
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return false
}

// listImports returns the module's packages with their imports of the
// module, internal/ left out; test, bench and test-helper packages are not
// part of the map.
func listImports(t *testing.T) map[string][]string {
	out, err := exec.Command("go", "list", "-json", "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	m := map[string][]string{}
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimPrefix(p.ImportPath, module)
		if pkg == "docs" || strings.HasPrefix(pkg, "internal/") || strings.HasPrefix(pkg, "test/") || strings.HasPrefix(pkg, "bench/") ||
			strings.HasSuffix(pkg, "test") {
			continue
		}
		var imps []string
		for _, imp := range p.Imports {
			if s, ok := strings.CutPrefix(imp, module); ok && !strings.HasPrefix(s, "internal/") {
				imps = append(imps, s)
			}
		}
		m[pkg] = imps
	}
	return m
}
