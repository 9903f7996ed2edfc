package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/emersion/go-message/mail"

	"github.com/sealgate/sealgate/internal/testsink"
)

// The portal mode: a fresh gateway (fs store) with a smarthost that keeps
// what it is sent (internal/testsink, in this process), the message sent
// with BDAT (not timed), the link and the passphrase read from the
// download and key notices; then, -count times, interleaved:
//
//   - baseline: `age -d -i <transfer identity> file.age > /dev/null`, the
//     stock age CLI decrypting the stored object with the identity the
//     portal unlocks (taken from key.age with the passphrase, as a
//     recipient with the age CLI would);
//   - portal: POST /t/{token}/download with the passphrase, the plaintext
//     read to the end and discarded as it arrives, timed from the request
//     to the last byte; checked: status 200 and the plaintext's size.
//
// The gateway's peak RSS is reset before each download and read after it.

var (
	linkRE = regexp.MustCompile(`https?://[^\s]+/t/([a-z2-7]{32})`)
	passRE = regexp.MustCompile(`(?m)^Passphrase: ([0-9A-Z]{5}(?:-[0-9A-Z]{5}){4})\r?$`)
)

// portalRun is one prepared gateway holding the sealed file.
type portalRun struct {
	g        *gatewayProc
	sink     *testsink.Sink
	dataDir  string
	token    string
	pass     string
	idPath   string // the transfer identity, for age -d
	objPath  string // file.age in the fs store
	csrf     string
	downLeft int
}

func (b *bench) portalSetup(ctx context.Context) (*portalRun, error) {
	sink, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to start the smarthost: %w", err)
	}
	p := &portalRun{sink: sink, dataDir: filepath.Join(b.work, "portal-data"), downLeft: 100, csrf: strings.Repeat("b", 40)}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	if err := os.Mkdir(p.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	settings := map[string]string{
		"SEALGATE_DATA_DIR":         p.dataDir,
		"SEALGATE_INTERNAL_DOMAINS": "corp.example",
		"SEALGATE_HOSTNAME":         "gw.corp.example",
		"SEALGATE_MAX_MESSAGE_SIZE": fmt.Sprint(b.in.msgSize + 64<<20),
		"SEALGATE_LOG_LEVEL":        "warn",
		"SEALGATE_STORAGE":          "fs",
		"SEALGATE_SMARTHOST":        sink.Addr(),
		"SEALGATE_KEY_NOTICE_DELAY": "0s",
		"SEALGATE_DOWNLOAD_LIMIT":   fmt.Sprint(p.downLeft),
		"SEALGATE_DOWNLOAD_RECEIPT": "false",
	}
	b.profileSetting(settings, "portal")
	if p.g, err = startGateway(ctx, b.bin, settings); err != nil {
		return nil, err
	}
	f, err := os.Open(b.in.msgPath)
	if err != nil {
		return nil, fmt.Errorf("failed to open message: %w", err)
	}
	defer f.Close()
	c, err := dial(p.g.smtpAddr)
	if err != nil {
		return nil, err
	}
	if err := c.envelope(sender, recipient); err != nil {
		c.close()
		return nil, err
	}
	_, _, _, err = c.sendBDAT(f, b.in.msgSize, b.o.chunk)
	c.close()
	if err != nil {
		return nil, fmt.Errorf("failed to send to sealgate (portal): %w\n%s", err, p.g.log)
	}
	msgs, err := sink.Wait(2*time.Minute, func(ms []testsink.Message) bool {
		var link, key bool
		for _, m := range ms {
			body := noticeText(m.Data)
			link = link || linkRE.MatchString(body)
			key = key || passRE.MatchString(body)
		}
		return link && key
	})
	if err != nil {
		return nil, fmt.Errorf("failed to receive the notices: %w\n%s", err, p.g.log)
	}
	for _, m := range msgs {
		body := noticeText(m.Data)
		if mm := linkRE.FindStringSubmatch(body); mm != nil {
			p.token = mm[1]
		}
		if mm := passRE.FindStringSubmatch(body); mm != nil {
			p.pass = mm[1]
		}
	}
	key, err := b.verify(p.dataDir)
	if err != nil {
		return nil, err
	}
	p.objPath = filepath.Join(p.dataDir, "objects", "objects", filepath.FromSlash(key))
	if _, err := os.Stat(p.objPath); err != nil {
		return nil, fmt.Errorf("failed to find the sealed object: %w", err)
	}
	// key.age, opened with the passphrase: the transfer identity.
	resp, err := p.post(ctx, "/t/"+p.token+"/age", url.Values{"what": {"key"}})
	if err != nil {
		return nil, err
	}
	keyAge, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("failed to fetch key.age: %s %v", resp.Status, err)
	}
	sid, err := age.NewScryptIdentity(p.pass)
	if err != nil {
		return nil, fmt.Errorf("failed to make the passphrase identity: %w", err)
	}
	var src io.Reader = bytes.NewReader(keyAge)
	if bytes.HasPrefix(keyAge, []byte(armor.Header)) {
		src = armor.NewReader(src)
	}
	r, err := age.Decrypt(src, sid)
	if err != nil {
		return nil, fmt.Errorf("failed to open key.age with the passphrase: %w", err)
	}
	idText, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("failed to open key.age with the passphrase: %w", err)
	}
	p.idPath = filepath.Join(b.work, "transfer-identity.txt")
	if err := os.WriteFile(p.idPath, idText, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write the identity: %w", err)
	}
	ok = true
	return p, nil
}

func (p *portalRun) close() {
	if p.g != nil {
		p.g.stop()
	}
	p.sink.Stop()
	os.RemoveAll(p.dataDir)
	if p.idPath != "" {
		os.Remove(p.idPath)
	}
}

// post sends a portal form with the CSRF cookie and field.
func (p *portalRun) post(ctx context.Context, path string, v url.Values) (*http.Response, error) {
	v.Set("csrf", p.csrf)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.g.httpAddr+path, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "sg_csrf", Value: p.csrf})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to post %s: %w", path, err)
	}
	return resp, nil
}

// ageDecrypt times the stock age CLI decrypting file.age to /dev/null.
func (b *bench) ageDecrypt(ctx context.Context, p *portalRun) (sample, error) {
	var r sample
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return r, err
	}
	defer null.Close()
	var stderr capBuffer
	cmd := exec.CommandContext(ctx, "age", "-d", "-i", p.idPath, p.objPath)
	cmd.Stdout, cmd.Stderr = null, &stderr
	syscall.Sync()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("failed to run age -d: %w: %s", err, stderr.String())
	}
	r.elapsed = time.Since(start)
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	b.log("age -d: %.2fs, age CPU %.1fs", r.elapsed.Seconds(), r.cpu.Seconds())
	return r, nil
}

// portalDownload times one decrypting download through the portal.
func (b *bench) portalDownload(ctx context.Context, p *portalRun) (sample, error) {
	var r sample
	if p.downLeft--; p.downLeft < 0 {
		return r, errors.New("failed to download: the download limit is spent")
	}
	if err := p.g.resetPeak(); err != nil {
		return r, err
	}
	cpu0, err := p.g.cpu()
	if err != nil {
		return r, err
	}
	syscall.Sync()
	start := time.Now()
	resp, err := p.post(ctx, "/t/"+p.token+"/download", url.Values{"passphrase": {p.pass}, "file": {"0"}})
	if err != nil {
		return r, err
	}
	// Large reads, so that the client costs the shared cores little
	// (io.Discard's own ReadFrom reads 8 KiB at a time); the baseline
	// writes to /dev/null, which costs nothing.
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, resp.Body, make([]byte, 1<<20))
	resp.Body.Close()
	r.elapsed = time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK || n != b.in.plainSize {
		return r, fmt.Errorf("failed to download through the portal: %s, %d of %d bytes, %v\n%s", resp.Status, n, b.in.plainSize, err, p.g.log)
	}
	if r.hwm, _, err = p.g.memory(); err != nil {
		return r, err
	}
	cpu1, err := p.g.cpu()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	b.log("portal download: %.2fs, peak RSS %s, CPU %.1fs", r.elapsed.Seconds(), mib(r.hwm), r.cpu.Seconds())
	return r, nil
}

// noticeText returns the decoded text parts of a notice, joined.
func noticeText(raw []byte) string {
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	var sb strings.Builder
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		if _, ok := part.Header.(*mail.InlineHeader); ok {
			b, _ := io.ReadAll(part.Body)
			sb.Write(b)
			sb.WriteString("\n")
		}
	}
	return sb.String()
}
