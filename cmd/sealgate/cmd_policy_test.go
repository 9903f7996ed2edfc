package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updatePolicyGolden = flag.Bool("update", false, "rewrite testdata/policy-*.golden")

// policyMails is a small folder of the project's own mail fixtures (gateway/mimeseal/testdata)
// and one broken message: an Outlook mail with a signature logo, a meeting invitation, a
// password-protected ZIP, a mail marked 【機密】, a PDF, a signed mail, plain text.
func policyMails(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"outlook_logo.eml", "invitation.eml", "ppap_zip.eml", "kimitsu.eml", "mixed_pdf.eml", "signed.eml", "plain.eml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "gateway", "mimeseal", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	broken := "From: tanaka@example.co.jp\nTo: suzuki@client.example.com\nSubject: broken\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nno closing boundary\n"
	if err := os.WriteFile(filepath.Join(dir, "broken.eml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updatePolicyGolden {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/sealgate -run TestPolicy -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (-update rewrites it):\n%s", path, got)
	}
}

// TestPolicyTestOutput: `sealgate policy test` over the folder prints, per message and per
// part, the decision and the rule, the rules in plain language in both languages, and the
// summary table.
func TestPolicyTestOutput(t *testing.T) {
	c := newCLIEnv(t)
	dir := policyMails(t)
	examples := filepath.Join("..", "..", "policy", "examples")
	out := c.run(t, cmdPolicy, "test", "--policy", filepath.Join(examples, "contracts-and-confidential.toml"), "--contract", "ACME", dir)
	compareGolden(t, "policy-test.golden", strings.ReplaceAll(out, examples, "EXAMPLES"))
	for _, want := range []string{
		"outlook_logo.eml", "image/png image001.png   keep  [signature-logo]", "application/pdf quote.pdf  seal  [attachment]",
		"text/calendar        keep  [invitation]", "refuse — 拒否 / refused [encrypted-archive]", "Password-protected archives",
		"seal_message — メッセージ全体を封印 / whole message sealed [confidential-subject]", "sealed_whole", "集計 / summary: 8 通 / messages",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// The built-in default (no policy.file): every attachment sealed, the logo and the
	// invitation too.
	out = c.run(t, cmdPolicy, "test", dir)
	compareGolden(t, "policy-test-default.golden", out)

	out = c.run(t, cmdPolicy, "test", "--diff", filepath.Join(examples, "default.toml"), filepath.Join(examples, "contracts-and-confidential.toml"), "--contract", "ACME", dir)
	compareGolden(t, "policy-diff.golden", out)
	if !strings.Contains(out, "part 3 image/png: seal [filename] → keep [signature-logo]") || !strings.Contains(out, "変更 / changed: 4 / 8") {
		t.Errorf("diff:\n%s", out)
	}
}

func TestPolicyCheck(t *testing.T) {
	c := newCLIEnv(t)
	out := c.run(t, cmdPolicy, "check", filepath.Join("..", "..", "policy", "examples", "whole-message-contract.toml"))
	for _, want := range []string{": OK", "[acme-whole] 契約が \"ACME-2026\" のいずれか なら → 本文を含めメッセージ全体を封印する",
		"[acme-whole] if the contract is one of \"ACME-2026\" → seal the whole message, body included"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("version = 1\n[message_default]\naction = \"seal\"\n"), 0o644)
	err := cmdPolicy(t.Context(), c.e, []string{"check", bad})
	if err == nil || !strings.Contains(err.Error(), "unknown action \"seal\"") || !strings.Contains(err.Error(), "part_default") {
		t.Fatalf("a broken policy: %v", err)
	}
}
