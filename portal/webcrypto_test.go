package portal

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/crypto"
)

// The page script: its own logic, run by Node.js against the Go code it
// mirrors, and the committed bundle against the pinned packages it is
// built from. (The decryption itself is tested in a real browser by
// test/e2e's TestBrowserDecrypt.)

// node runs an ES module script with stdin and returns its standard output,
// or skips without Node.js (fails when SEALGATE_REQUIRE_TOOLS=1).
func node(t *testing.T, script, stdin string) string {
	t.Helper()
	path, err := exec.LookPath("node")
	if err != nil {
		msg := "Node.js is not installed (apt-get install nodejs): the page script's tests skipped"
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := exec.Command(path, "--input-type=module", "-e", script)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	return string(out)
}

// moduleURL is the file URL of a module of the page script.
func moduleURL(t *testing.T, name string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("webcrypto", "src", name))
	if err != nil {
		t.Fatal(err)
	}
	return (&url.URL{Scheme: "file", Path: abs}).String()
}

// TestPagePassphraseRulesMatchGo: the page accepts and canonicalizes a
// typed passphrase exactly as crypto.NormalizePassphrase does — the same
// canonical form, the same refusals — for sloppy forms of real
// passphrases and for random strings of the characters that matter.
func TestPagePassphraseRulesMatchGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs []string
	for i := 0; i < 500; i++ {
		p, err := crypto.NewPassphrase(cryptoRand{rng})
		if err != nil {
			t.Fatal(err)
		}
		how := make([]byte, rng.IntN(4))
		for j := range how {
			how[j] = byte(rng.IntN(256))
		}
		inputs = append(inputs, p, sloppy(p, string(how)))
	}
	runes := []rune("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -\t\u3000\u30fc\uff0d\uff10\uff21\uff41\uff4f\uff2c\uff5e\uff01é€\U0001F600!_")
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		n := 20 + rng.IntN(15)
		for j := 0; j < n; j++ {
			b.WriteRune(runes[rng.IntN(len(runes))])
		}
		inputs = append(inputs, b.String())
	}
	inputs = append(inputs, "", "-----", "7KQ2M-XR9TB-04HZD-MWE6P-S3NCA", "7kq2m xr9tb 04hzd mwe6p s3nca", "OOOOO-IIIII-LLLLL-ooooo-iiiii",
		"7KQ2M-XR9TB-04HZD-MWE6P-S3NCAA", "7KQ2M-XR9TB-04HZD-MWE6P-S3NC", "７ＫＱ２Ｍー", "UUUUU-UUUUU-UUUUU-UUUUU-UUUUU")
	in, err := json.Marshal(inputs)
	if err != nil {
		t.Fatal(err)
	}
	out := node(t, `import { normalizePassphrase } from "`+moduleURL(t, "passphrase.js")+`";
let s = "";
process.stdin.on("data", (d) => { s += d; });
process.stdin.on("end", () => { process.stdout.write(JSON.stringify(JSON.parse(s).map(normalizePassphrase))); });`, string(in))
	var got []*string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("node's answer: %v\n%s", err, out)
	}
	if len(got) != len(inputs) {
		t.Fatalf("%d answers for %d inputs", len(got), len(inputs))
	}
	accepted := 0
	for i, typed := range inputs {
		want, ok := crypto.NormalizePassphrase(typed)
		switch {
		case ok && (got[i] == nil || *got[i] != want):
			t.Errorf("%q: Go %q, the page %v", typed, want, deref(got[i]))
		case !ok && got[i] != nil:
			t.Errorf("%q: Go refuses it, the page makes it %q", typed, *got[i])
		}
		if ok {
			accepted++
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d of %d inputs are passphrases: the test does not exercise acceptance", accepted, len(inputs))
	}
}

// TestPageChoosesWhereToWrite: a browser that can write to a picked file
// decrypts any size into it; one that cannot decrypts up to the memory
// limit in memory, and refuses beyond it.
func TestPageChoosesWhereToWrite(t *testing.T) {
	out := node(t, `import { chooseSink } from "`+moduleURL(t, "sink.js")+`";
const limit = 512 * 1024 * 1024;
process.stdout.write(JSON.stringify([chooseSink(10, true, limit), chooseSink(8 * limit, true, limit),
	chooseSink(10, false, limit), chooseSink(limit, false, limit), chooseSink(limit + 1, false, limit)]));`, "")
	if want := `["file","file","memory","memory","too-large"]`; out != want {
		t.Fatalf("chooseSink: %s, want %s", out, want)
	}
}

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// cryptoRand reads from a seeded generator (a reproducible test input,
// not a key).
type cryptoRand struct{ r *rand.Rand }

func (c cryptoRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c.r.IntN(256))
	}
	return len(p), nil
}

// TestBundlePinsAgeEncryption: the page script is built from exact
// versions — package.json names age-encryption (and every other
// dependency) without a range, package-lock.json holds that version with
// its sha512 integrity hash (what npm ci checks each downloaded package
// against), and the committed bundle's banner names that version.
func TestBundlePinsAgeEncryption(t *testing.T) {
	var pkg struct {
		Dependencies, DevDependencies map[string]string
	}
	var lock struct {
		Packages map[string]struct {
			Version, Integrity string
		}
	}
	for name, v := range map[string]any{"package.json": &pkg, "package-lock.json": &lock} {
		b, err := os.ReadFile(filepath.Join("webcrypto", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	pinned := regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	for _, deps := range []map[string]string{pkg.Dependencies, pkg.DevDependencies} {
		for name, v := range deps {
			if !pinned.MatchString(v) {
				t.Errorf("package.json: %s %q is not an exact version", name, v)
			}
			l, ok := lock.Packages["node_modules/"+name]
			if !ok || l.Version != v || !strings.HasPrefix(l.Integrity, "sha512-") {
				t.Errorf("package-lock.json: %s is %+v, package.json pins %s", name, l, v)
			}
		}
	}
	age := pkg.Dependencies["age-encryption"]
	if age == "" {
		t.Fatal("package.json does not depend on age-encryption")
	}
	js, err := staticFS.ReadFile("static/decrypt.js")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(js), "\n")
	if !strings.Contains(first, "(age-encryption "+age+",") {
		t.Fatalf("the bundle's banner does not name age-encryption %s: %q", age, first)
	}
}

// TestBundleIsBuiltFromLock: portal/webcrypto/build.sh --check installs
// exactly the packages of package-lock.json from the npm registry (npm
// ci, each checked against its integrity hash), rebuilds the bundle and
// compares it byte for byte with the committed static/decrypt.js. It
// needs npm and the registry: it skips without them, and fails under
// SEALGATE_REQUIRE_TOOLS=1 (CI).
func TestBundleIsBuiltFromLock(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the npm registry")
	}
	cmd := exec.Command("./webcrypto/build.sh", "--check")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		t.Logf("%s", out)
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		msg := "npm or the npm registry is not available: the bundle was not rebuilt\n" + string(out)
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	default:
		t.Fatalf("build.sh --check: %v\n%s", err, out)
	}
}
