package inspect

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needTool finds a command-line tool, or skips the test (fails when SEALGATE_REQUIRE_TOOLS=1).
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is not installed (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s); set SEALGATE_REQUIRE_TOOLS=1 to fail instead", name, pkg)
	}
	return p
}

// crossCheck reports whether an independent tool is there to confirm a result; it fails the
// test when the tool is missing and SEALGATE_REQUIRE_TOOLS=1.
func crossCheck(t *testing.T, name, pkg string) bool {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is not installed (apt-get install %s)", name, pkg)
		}
		t.Logf("%s is not installed: the cross-check is not run", name)
		return false
	}
	return true
}

func run(t *testing.T, dir string, okCodes []int, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		code = ee.ExitCode()
	}
	for _, c := range append(okCodes, 0) {
		if c == code {
			return out
		}
	}
	t.Fatalf("%s %v: exit %d\n%s", name, args, code, out)
	return nil
}

// inspectAll runs data through an Inspector in writes of several sizes and checks that the
// result does not depend on them.
func inspectAll(t *testing.T, name string, data []byte) Result {
	t.Helper()
	var first Result
	for i, chunk := range []int{len(data) + 1, 1, 3, 7, 64, 127, 4096, 65537} {
		in := New()
		for p := data; len(p) > 0; {
			n := min(chunk, len(p))
			if _, err := in.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		in.Close()
		r := in.Result()
		if i == 0 {
			first = r
		} else if r != first {
			t.Fatalf("%s: writes of %d bytes give %+v, one write %+v", name, chunk, r, first)
		}
	}
	return first
}

type want struct {
	file      string
	mediaType string
	format    string
	encrypted bool
}

func check(t *testing.T, dir string, cases []want) {
	t.Helper()
	for _, c := range cases {
		data, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		r := inspectAll(t, c.file, data)
		if r.MediaType != c.mediaType || r.Format != c.format || r.Encrypted != c.encrypted || r.Undetermined || r.Size != int64(len(data)) {
			t.Errorf("%s: %+v, want type %s format %s encrypted %v", c.file, r, c.mediaType, c.format, c.encrypted)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A directory of sample input files: text, random (incompressible) data, and a larger one.
func samples(t *testing.T) string {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"a.txt":       []byte("hello sealgate\n"),
		"b.bin":       randomBytes(100 << 10),
		"c.txt":       bytes.Repeat([]byte("confidential figures 1234567890\n"), 4000),
		"many/1.txt":  []byte("one\n"),
		"many/2.txt":  []byte("two\n"),
		"many/3.bin":  randomBytes(5000),
		"many/4.txt":  []byte(strings.Repeat("four\n", 100)),
		"many/5.csv":  []byte("a,b,c\n1,2,3\n"),
		"many/6.json": []byte(`{"k": "v"}`),
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestZipInfoZip(t *testing.T) {
	zip := needTool(t, "zip", "zip")
	dir := samples(t)
	run(t, dir, nil, zip, "-q", "plain.zip", "a.txt", "b.bin", "c.txt")
	run(t, dir, nil, zip, "-q", "-P", "secret", "enc.zip", "a.txt", "b.bin", "c.txt")
	// One encrypted entry among plain ones (any entry counts), last in the archive.
	run(t, dir, nil, zip, "-q", "mixed.zip", "a.txt", "c.txt")
	run(t, dir, nil, zip, "-q", "-P", "secret", "mixed.zip", "b.bin")
	// Written to a pipe: data descriptors, sizes after the data (general purpose bit 3).
	for _, c := range []struct{ out, args string }{{"stream.zip", ""}, {"stream_enc.zip", "-P secret"}} {
		cmd := exec.Command("sh", "-c", fmt.Sprintf("%s -q %s - b.bin a.txt c.txt | cat > %s", zip, c.args, c.out))
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	check(t, dir, []want{
		{"plain.zip", "application/zip", "zip", false},
		{"enc.zip", "application/zip", "zip", true},
		{"mixed.zip", "application/zip", "zip", true},
		{"stream.zip", "application/zip", "zip", false},
		{"stream_enc.zip", "application/zip", "zip", true},
	})
	// The data-descriptor archive really has bit 3 set (otherwise the test proves nothing).
	data, _ := os.ReadFile(filepath.Join(dir, "stream.zip"))
	if le16(data[6:])&0x0008 == 0 {
		t.Fatalf("stream.zip has no data descriptor")
	}
}

func Test7z(t *testing.T) {
	sz := needTool(t, "7z", "p7zip-full")
	dir := samples(t)
	run(t, dir, nil, sz, "a", "-bd", "plain.7z", "a.txt")
	run(t, dir, nil, sz, "a", "-bd", "plain_many.7z", "many")
	run(t, dir, nil, sz, "a", "-bd", "-psecret", "enc.7z", "a.txt")
	run(t, dir, nil, sz, "a", "-bd", "-psecret", "enc_many.7z", "many")
	run(t, dir, nil, sz, "a", "-bd", "-psecret", "-mhe=on", "enc_headers.7z", "many")
	// ZIP written by 7-Zip with WinZip AES (method 99, extra field 0x9901) and plain.
	run(t, dir, nil, sz, "a", "-bd", "-tzip", "-psecret", "-mem=AES256", "aes.zip", "a.txt", "b.bin")
	run(t, dir, nil, sz, "a", "-bd", "-tzip", "plain7.zip", "a.txt", "b.bin")
	check(t, dir, []want{
		{"plain.7z", "application/x-7z-compressed", "7z", false},
		{"plain_many.7z", "application/x-7z-compressed", "7z", false},
		{"enc.7z", "application/x-7z-compressed", "7z", true},
		{"enc_many.7z", "application/x-7z-compressed", "7z", true},
		{"enc_headers.7z", "application/x-7z-compressed", "7z", true},
		{"aes.zip", "application/zip", "zip", true},
		{"plain7.zip", "application/zip", "zip", false},
	})
	// enc_many.7z's header is LZMA-compressed (the coders are only visible once decoded).
	data, _ := os.ReadFile(filepath.Join(dir, "enc_many.7z"))
	off := int(le64(data[12:]))
	if data[32+off] != k7zEncodedHeader {
		t.Fatalf("enc_many.7z: header is not encoded (%#x): the decoding path is not exercised", data[32+off])
	}
}

func TestPDF(t *testing.T) {
	qpdf := needTool(t, "qpdf", "qpdf")
	dir := t.TempDir()
	content := "BT /F1 12 Tf 20 100 Td (hello sealgate) Tj ET\n"
	src := fmt.Sprintf("%%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"+
		"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R>>endobj\n"+
		"4 0 obj<</Length %d>>stream\n%sendstream\nendobj\ntrailer<</Size 5/Root 1 0 R>>\n%%%%EOF\n", len(content), content)
	os.WriteFile(filepath.Join(dir, "min.pdf"), []byte(src), 0o644)
	// qpdf rebuilds the cross-reference table (exit 3: warnings about the missing one).
	run(t, dir, []int{3}, qpdf, "min.pdf", "plain.pdf")
	run(t, dir, nil, qpdf, "--object-streams=generate", "plain.pdf", "plain_objstm.pdf")
	run(t, dir, nil, qpdf, "--encrypt", "user", "owner", "256", "--", "plain.pdf", "aes256.pdf")
	run(t, dir, nil, qpdf, "--allow-weak-crypto", "--encrypt", "user", "owner", "40", "--", "plain.pdf", "rc4.pdf")
	// Cross-reference stream: /Encrypt is in the stream's dictionary, not in a trailer.
	run(t, dir, nil, qpdf, "--object-streams=generate", "--encrypt", "", "owner", "128", "--use-aes=y", "--", "plain.pdf", "aes128_objstm.pdf")
	check(t, dir, []want{
		{"plain.pdf", "application/pdf", "pdf", false},
		{"plain_objstm.pdf", "application/pdf", "pdf", false},
		{"aes256.pdf", "application/pdf", "pdf", true},
		{"rc4.pdf", "application/pdf", "pdf", true},
		{"aes128_objstm.pdf", "application/pdf", "pdf", true},
	})
	if b, _ := os.ReadFile(filepath.Join(dir, "aes128_objstm.pdf")); bytes.Contains(b, []byte("trailer")) {
		t.Fatalf("aes128_objstm.pdf has a classic trailer: the cross-reference stream case is not exercised")
	}
}

// Legacy Office documents encrypted by LibreOffice (Word 97 RC4 CryptoAPI, Excel FILEPASS).
func TestOfficeLibreOffice(t *testing.T) {
	needTool(t, "soffice", "libreoffice-writer-nogui libreoffice-calc-nogui")
	py := "/usr/bin/python3"
	if _, err := os.Stat("/usr/lib/python3/dist-packages/uno.py"); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal("python3-uno is not installed")
		}
		t.Skip("python3-uno is not installed (apt-get install python3-uno)")
	}
	dir := t.TempDir()
	script, _ := filepath.Abs("testdata/lo_encrypt.py")
	run(t, dir, nil, py, script, filepath.Join(dir, "profile"),
		"enc.doc|MS Word 97|swriter|secret", "plain.doc|MS Word 97|swriter|",
		"enc.xls|MS Excel 97|scalc|secret", "plain.xls|MS Excel 97|scalc|",
		"plain.docx|MS Word 2007 XML|swriter|", "plain.xlsx|Calc MS Excel 2007 XML|scalc|",
		"plain.odt|writer8|swriter|")
	check(t, dir, []want{
		{"enc.doc", "application/msword", "cfb", true},
		{"plain.doc", "application/msword", "cfb", false},
		{"enc.xls", "application/vnd.ms-excel", "cfb", true},
		{"plain.xls", "application/vnd.ms-excel", "cfb", false},
		{"plain.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "zip", false},
		{"plain.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "zip", false},
		{"plain.odt", "application/vnd.oasis.opendocument.text", "zip", false},
	})
	// msoffcrypto-tool, an independent reader, agrees on what is encrypted.
	if crossCheck(t, "msoffcrypto-tool", "python3-msoffcrypto-tool") {
		for f, enc := range map[string]bool{"enc.doc": true, "plain.doc": false, "enc.xls": true, "plain.xls": false} {
			err := exec.Command("msoffcrypto-tool", "-t", filepath.Join(dir, f)).Run()
			if (err == nil) != enc {
				t.Errorf("msoffcrypto-tool -t %s: %v, we say encrypted=%v", f, err, enc)
			}
		}
	}
}

// Encrypted OOXML (an OLE container with EncryptionInfo and EncryptedPackage, as Office writes
// for a password-protected .docx) and PowerPoint's encrypted CurrentUserAtom, built by hand.
func TestOfficeHandBuilt(t *testing.T) {
	// EncryptionInfo of agile encryption (MS-OFFCRYPTO 2.3.4.10): version 4.4, reserved 0x40,
	// then the XML descriptor as Office writes it.
	agile := append([]byte{4, 0, 4, 0, 0x40, 0, 0, 0}, []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`+"\r\n"+
		`<encryption xmlns="http://schemas.microsoft.com/office/2006/encryption" xmlns:p="http://schemas.microsoft.com/office/2006/keyEncryptor/password" xmlns:c="http://schemas.microsoft.com/office/2006/keyEncryptor/certificate">`+
		`<keyData saltSize="16" blockSize="16" keyBits="256" hashSize="64" cipherAlgorithm="AES" cipherChaining="ChainingModeCBC" hashAlgorithm="SHA512" saltValue="5Ahmu5ydvbVJTUHeHZzkNg=="/>`+
		`<dataIntegrity encryptedHmacKey="Yzf84q3+eWWZXHNTQ5gPmjUYsz5ACpDxdpAFWOTYsGf2o1R6bYQNOAHgRtVnMvHXb7MLS73UoWSWVVKD5KfxOw==" encryptedHmacValue="lwXhvBOzwq5NW4KkmA1a2pzXG8A3yQk6xCxyEQC64uOf6mlcPnH+j1wP5OpoSNy1l6xWZBmdhDo9GxAYQsTZKA=="/>`+
		`<keyEncryptors><keyEncryptor uri="http://schemas.microsoft.com/office/2006/keyEncryptor/password"><p:encryptedKey spinCount="100000" saltSize="16" blockSize="16" keyBits="256" hashSize="64" cipherAlgorithm="AES" cipherChaining="ChainingModeCBC" hashAlgorithm="SHA512" saltValue="F3Xd9WXSwNlvCeuVyvuq+Q==" encryptedVerifierHashInput="rO9vkUgdTUyw9t7C6wafVQ==" encryptedVerifierHashValue="u9jXm8OkOnKEF3DiU9iVLR49ebTOi8UiPnuOwSYDyrU1G6S1ac6x5cWW1CQq1Fhe+1xjYjnXjLldEyo3m/1CCA==" encryptedKeyValue="ds/NXcQRIsZG09nvz8uEzTwLezeZwZkQVnATAZXiL10="/></keyEncryptor></keyEncryptors></encryption>`)...)
	pkg := append(le32b(20000), make([]byte, 4)...)
	pkg = append(pkg, randomBytes(20000)...)
	curUser := func(token uint32) []byte {
		b := []byte{0, 0, 0xF6, 0x0F}
		b = append(b, le32b(28)...)
		b = append(b, le32b(0x14)...)
		b = append(b, le32b(token)...)
		b = append(b, le32b(0)...) // offsetToCurrentEdit
		b = append(b, le16b(4)...) // lenUserName
		b = append(b, le16b(0x03F4)...)
		b = append(b, 3, 0, 's', 'g', 'a', 't')
		return b
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"enc_ooxml.docx": buildCFB([]cfbStream{{"EncryptionInfo", agile}, {"EncryptedPackage", pkg}}),
		"enc.ppt":        buildCFB([]cfbStream{{"Current User", curUser(0xF3D1C4DF)}, {"PowerPoint Document", randomBytes(8000)}}),
		"plain.ppt":      buildCFB([]cfbStream{{"Current User", curUser(0xE391C05F)}, {"PowerPoint Document", randomBytes(8000)}}),
		"plain.msg":      buildCFB([]cfbStream{{"__substg1.0_0037001F", []byte("s\x00u\x00b\x00j\x00")}, {"__properties_version1.0", make([]byte, 32)}}),
	}
	for name, b := range files {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	check(t, dir, []want{
		{"enc_ooxml.docx", "application/x-ole-storage", "cfb", true},
		{"enc.ppt", "application/vnd.ms-powerpoint", "cfb", true},
		{"plain.ppt", "application/vnd.ms-powerpoint", "cfb", false},
		{"plain.msg", "application/vnd.ms-outlook", "cfb", false},
	})
	// The hand-built container is a valid compound file: msoffcrypto-tool (olefile) reads it
	// and finds the encrypted package.
	if crossCheck(t, "msoffcrypto-tool", "python3-msoffcrypto-tool") {
		out, err := exec.Command("msoffcrypto-tool", "-t", "-v", filepath.Join(dir, "enc_ooxml.docx")).CombinedOutput()
		if err != nil {
			t.Errorf("msoffcrypto-tool -t enc_ooxml.docx: %v\n%s", err, out)
		}
	}
}

// RAR is non-free: the archives are built from the format descriptions; 7-Zip (which lists
// RAR) confirms they are what they claim.
func TestRar(t *testing.T) {
	files := []rarFile{{"a.txt", []byte("hello sealgate\n"), false}, {"b.bin", randomBytes(3000), false}}
	encFiles := []rarFile{files[0], {"b.bin", randomBytes(3000), true}}
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"plain4.rar":       buildRar4(files, false),
		"enc4.rar":         buildRar4(encFiles, false),
		"enc4_headers.rar": buildRar4(nil, true),
		"plain5.rar":       buildRar5(files, false),
		"enc5.rar":         buildRar5(encFiles, false),
		"enc5_headers.rar": buildRar5(nil, true),
	} {
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	check(t, dir, []want{
		{"plain4.rar", "application/vnd.rar", "rar4", false},
		{"enc4.rar", "application/vnd.rar", "rar4", true},
		{"enc4_headers.rar", "application/vnd.rar", "rar4", true},
		{"plain5.rar", "application/vnd.rar", "rar5", false},
		{"enc5.rar", "application/vnd.rar", "rar5", true},
		{"enc5_headers.rar", "application/vnd.rar", "rar5", true},
	})
	if !crossCheck(t, "7z", "p7zip-full") {
		return
	}
	for name, wantEnc := range map[string]string{"plain4.rar": "-", "enc4.rar": "+", "plain5.rar": "-", "enc5.rar": "+"} {
		out, _ := exec.Command("7z", "l", "-slt", "-p-", filepath.Join(dir, name)).CombinedOutput()
		if !bytes.Contains(out, []byte("Path = b.bin")) || !bytes.Contains(out, []byte("Encrypted = "+wantEnc)) {
			t.Errorf("7z l %s does not list b.bin with Encrypted = %s:\n%s", name, wantEnc, out)
		}
	}
}

func TestSniff(t *testing.T) {
	pe := make([]byte, 256)
	copy(pe, "MZ")
	copy(pe[60:], le32b(128))
	copy(pe[128:], "PE\x00\x00")
	for _, c := range []struct {
		data []byte
		want string
	}{
		{[]byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\n"), "text/calendar"},
		{[]byte("\xEF\xBB\xBF\r\nbegin:vcalendar\r\n"), "text/calendar"},
		{[]byte("BEGIN:VCARD\r\nVERSION:3.0\r\n"), "text/vcard"},
		{[]byte("hello\n"), "text/plain"},
		{[]byte("<html><body><p>x</p></body></html>"), "text/html"},
		{[]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "image/png"},
		{[]byte("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00"), "image/jpeg"},
		{[]byte("GIF89a\x01\x00"), "image/gif"},
		{[]byte("junk before\n%PDF-1.7\n"), "application/pdf"},
		{pe, "application/vnd.microsoft.portable-executable"},
		{[]byte("\x7FELF\x02\x01\x01\x00"), "application/x-executable"},
		{[]byte("\x00\x00-lh5-\x00\x00"), "application/x-lzh-compressed"},
		{[]byte("BZh91AY&SY"), "application/x-bzip2"},
		{[]byte("\xFD7zXZ\x00\x00\x04"), "application/x-xz"},
		{[]byte{0x1F, 0x8B, 0x08, 0, 0, 0, 0, 0}, "application/x-gzip"},
		{nil, "text/plain"},
	} {
		r := inspectAll(t, c.want, c.data)
		if r.MediaType != c.want {
			t.Errorf("%q: %s, want %s", c.data[:min(len(c.data), 16)], r.MediaType, c.want)
		}
	}
}

// Truncated archives are reported Undetermined, never "not encrypted" with certainty.
func TestTruncated(t *testing.T) {
	zip := needTool(t, "zip", "zip")
	dir := samples(t)
	run(t, dir, nil, zip, "-q", "plain.zip", "a.txt", "b.bin")
	data, _ := os.ReadFile(filepath.Join(dir, "plain.zip"))
	for _, b := range [][]byte{
		data[:len(data)/2],
		buildRar5([]rarFile{{"a", randomBytes(500), false}}, false)[:300],
		buildRar4([]rarFile{{"a", randomBytes(500), false}}, false)[:300],
	} {
		if r := inspectAll(t, "truncated", b); !r.Undetermined {
			t.Errorf("truncated %s: %+v", r.Format, r)
		}
	}
}

func TestWriteAfterClose(t *testing.T) {
	in := New()
	in.Write([]byte("PK\x03\x04"))
	in.Close()
	if _, err := in.Write([]byte("x")); err != ErrClosed {
		t.Errorf("Write after Close: %v", err)
	}
	in.Reset()
	in.Write([]byte("%PDF-1.4\n"))
	in.Close()
	if r := in.Result(); r.MediaType != "application/pdf" || r.Size != 9 {
		t.Errorf("after Reset: %+v", r)
	}
}

func TestCIDRefs(t *testing.T) {
	html := `<html><body><p>Regards</p><img src="cid:image001.png@01DA0B1C.5E6F7A80" width=80>` +
		`<img src='CID:logo%20two@example.jp'><div style="background:url(cid:bg@x)"></div>` +
		`<p>acid:no</p><a href="https://example.com/?cid:no2">x</a>cid:last@end`
	for _, chunk := range []int{1, 2, 5, len(html)} {
		c := NewCIDRefs()
		for p := []byte(html); len(p) > 0; {
			n := min(chunk, len(p))
			c.Write(p[:n])
			p = p[n:]
		}
		c.Close()
		got := strings.Join(c.Refs(), " | ")
		want := "image001.png@01DA0B1C.5E6F7A80 | logo two@example.jp | bg@x | last@end"
		if got != want {
			t.Fatalf("chunk %d: %s, want %s", chunk, got, want)
		}
		if !c.Has("<image001.png@01DA0B1C.5E6F7A80>") || !c.Has(" <logo two@example.jp> ") || c.Has("<no>") || c.Has("") {
			t.Errorf("Has is wrong")
		}
	}
}

// Random bytes after a signature never crash an Inspector, whatever the write sizes.
func TestRandomAfterSignatures(t *testing.T) {
	sigs := [][]byte{[]byte("PK\x03\x04"), sig7z, sigRar4, sigRar5, sigCFB, []byte("%PDF-1.5\n")}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(5000))
		data := append(append([]byte(nil), sigs[i%len(sigs)]...), randomBytes(int(n.Int64()))...)
		in := New()
		for p := data; len(p) > 0; {
			k := min(1+rng.IntN(700), len(p))
			in.Write(p[:k])
			p = p[k:]
		}
		in.Close()
	}
}
