package database_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// owners names the one package that queries each table (issue 12): every
// other package calls the owner's typed functions. The test fails when a
// table has no owner here, so a migration that adds one must name it.
var owners = map[string]string{
	"messages":               "transfer",
	"transfers":              "transfer",
	"files":                  "transfer",
	"recipients":             "transfer",
	"recipient_files":        "transfer",
	"contracts":              "contract",
	"contract_allowed":       "contract",
	"accounts":               "account",
	"account_roles":          "account",
	"sessions":               "account",
	"logins":                 "account",
	"app_passwords":          "account",
	"recipient_keys":         "pubkey",
	"holds":                  "hold",
	"ledger_records":         "audit",
	"ledger_hashes":          "audit",
	"ledger_checkpoints":     "audit",
	"ledger_published":       "audit",
	"ledger_cosignatures":    "audit",
	"ledger_names":           "audit",
	"ledger_names_destroyed": "audit",
	"master_epochs":          "masterkey",
	"outbound":               "outbox",
	"certificates":           "destroy",
	"rate_counters":          "internal/ratelimit",
	"spool_files":            "gateway",
}

// tableRE finds a table named in an SQL statement.
var tableRE = regexp.MustCompile(`\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)\b`)

// TestTableOwners checks that every table is queried only by its owner:
// string literals of every non-test Go file of the module, outside test/
// and bench/ (tools that check the database from outside). Package
// database owns no table: its copy of a whole installation into
// PostgreSQL (copy.go, `sealgate migrate`) takes the table and column
// names from the catalogs, so a literal of its naming a table fails here
// too.
func TestTableOwners(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tables := schemaTables(t)
	for _, tb := range tables {
		if owners[tb] == "" {
			t.Errorf("table %s has no owner in owners", tb)
		}
	}
	known := map[string]bool{}
	for _, tb := range tables {
		known[tb] = true
	}
	seen := map[string]map[string]bool{} // file -> tables outside the owner
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "test" || rel == "bench" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, m := range tableRE.FindAllStringSubmatch(s, -1) {
				tb := m[1]
				if !known[tb] || owners[tb] == pkg {
					continue
				}
				if seen[rel] == nil {
					seen[rel] = map[string]bool{}
				}
				seen[rel][tb] = true
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files := make([]string, 0, len(seen))
	for f := range seen {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, file := range files {
		for _, tb := range sortedKeys(seen[file]) {
			t.Errorf("%s queries table %s, owned by package %s: call a typed function of %s", file, tb, owners[tb], owners[tb])
		}
	}
}

// TestOneQuerier checks that database.Querier is the only declared
// interface made of the read methods alone (audit's DBTX adds
// ExecContext: Append writes).
func TestOneQuerier(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	reads := map[string]bool{"QueryContext": true, "QueryRowContext": true}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			it, ok := n.(*ast.InterfaceType)
			if !ok || it.Methods == nil || len(it.Methods.List) == 0 {
				return true
			}
			for _, m := range it.Methods.List {
				if len(m.Names) != 1 || !reads[m.Names[0].Name] {
					return true
				}
			}
			if rel != "database/database.go" {
				p := fset.Position(it.Pos())
				t.Errorf("%s:%d declares a copy of database.Querier: use database.Querier", rel, p.Line)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// schemaTables lists the tables the migrations create.
func schemaTables(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`(?i)CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)`)
	names, err := filepath.Glob("migrations/sqlite/*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
	}
	return out
}
