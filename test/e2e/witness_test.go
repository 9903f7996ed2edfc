package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testlitewitness"
	"github.com/sealgate/sealgate/internal/testsink"
)

// witnessProc is one `sealgate witness serve` process.
type witnessProc struct {
	dir, addr, key string
	cmd            *exec.Cmd
	log            *syncBuffer
	done           chan error
}

// startWitnessProc creates a witness (`sealgate witness init`), makes it
// accept the ledger whose verifier key file is logPub, and serves it.
func startWitnessProc(t *testing.T, name, logPub string) *witnessProc {
	t.Helper()
	w := &witnessProc{dir: filepath.Join(t.TempDir(), "witness"), addr: freeAddr(t), log: &syncBuffer{}}
	out, err := exec.Command(binary, "witness", "init", "--dir", w.dir, "--name", name).Output()
	if err != nil {
		t.Fatalf("witness init: %v", err)
	}
	w.key = strings.TrimSpace(string(out))
	if b, err := exec.Command(binary, "witness", "add-log", "--dir", w.dir, "@"+logPub).CombinedOutput(); err != nil {
		t.Fatalf("witness add-log: %v\n%s", err, b)
	}
	w.cmd = exec.Command(binary, "witness", "serve", "--dir", w.dir, "--listen", w.addr)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.done = make(chan error, 1)
	go func() { w.done <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.cmd.Process.Signal(syscall.SIGTERM)
		<-w.done
		if t.Failed() {
			t.Logf("witness %s log:\n%s", name, w.log.String())
		}
	})
	waitFor(t, 60*time.Second, "the witness to listen", func() bool {
		c, err := net.Dial("tcp", w.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return w
}

// witnessedGateway starts a gateway that signs a checkpoint after every
// event and retries its witnesses each second.
func witnessedGateway(t *testing.T, sink *testsink.Sink, extra ...string) *gw {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "sealgate.toml")
	if err := os.WriteFile(conf, []byte("[ledger]\ncheckpoint_every = 1\ncheckpoint_interval = \"1s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: append([]string{"SEALGATE_CONFIG=" + conf}, extra...)})
}

// sendWitnessed sends one message with an attachment to extA and waits for
// its copy at the smarthost.
func sendWitnessed(t *testing.T, g *gw, sink *testsink.Sink, id string) {
	t.Helper()
	sendWitnessedTo(t, g, sink, id, extA)
}

func sendWitnessedTo(t *testing.T, g *gw, sink *testsink.Sink, id, rcpt string) {
	t.Helper()
	raw := buildMessage(map[string]string{"From": sender, "To": rcpt, "Subject": "witnessed " + id,
		"Message-ID": "<" + id + "@corp.example>"}, "body", attachment{name: id + ".pdf", contentType: "application/pdf", data: randomBytes(4 << 10)})
	if err := send(t, g.smtpAddr, sender, []string{rcpt}, raw); err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
	if _, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		for _, x := range m {
			if bytes.Contains(x.Data, []byte("witnessed "+id)) && len(x.To) == 1 && x.To[0] == rcpt {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("message %s did not flow: %v", id, err)
	}
}

// cosignedBy counts the checkpoints of g cosigned by the witness key.
func cosignedBy(t *testing.T, g *gw, key string) int {
	t.Helper()
	return dbInt(t, g, `SELECT COUNT(*) FROM ledger_cosignatures WHERE witness = ?`, keyID(key))
}

// latestCosigned reports whether g's newest checkpoint carries a
// cosignature of the witness key.
func latestCosigned(t *testing.T, g *gw, key string) bool {
	t.Helper()
	return dbInt(t, g, `SELECT COUNT(*) FROM ledger_cosignatures WHERE witness = ? AND size = (SELECT MAX(size) FROM ledger_checkpoints)`, keyID(key)) == 1
}

// keyID is "<name>+<key ID>" of a verifier key (its base64 may hold '+').
func keyID(key string) string {
	f := strings.SplitN(key, "+", 3)
	return f[0] + "+" + f[1]
}

// systemNotices returns the bodies (decoded) of the system notices to rcpt.
func systemNotices(msgs []testsink.Message, rcpt string) []string {
	var out []string
	for _, m := range msgs {
		if len(m.To) != 1 || m.To[0] != rcpt || !bytes.Contains(m.Data, []byte("X-Sealgate-Notice: system")) {
			continue
		}
		_, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			continue
		}
		out = append(out, string(b))
	}
	return out
}

// TestWitnesses: `sealgate serve` sends every checkpoint to two witnesses,
// a `sealgate witness` process and torchwood's litewitness; both cosign,
// and `audit verify`/`verify-db`/`verify-certificate --witness …
// --witnesses 2` pass. With
// litewitness down, mail flows, the error is logged, the administrators
// get the alert, and it is alerted again when litewitness is back. A copy
// of the gateway's data directory taken before the witnesses saw anything,
// given another history and signed with the gateway's own key, is refused
// by both witnesses, and its export and database fail verification with
// the witness keys, naming why, while they pass with the gateway key alone.
func TestWitnesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bins, err := testlitewitness.Build(ctx, t.TempDir())
	if err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skipf("%v; set SEALGATE_REQUIRE_TOOLS=1 to fail instead", err)
	}
	sink := startSink(t)
	g := witnessedGateway(t, sink)
	addUser(t, g, "root", "root@corp.example", "correct horse battery staple 42", "admin")
	sendWitnessed(t, g, sink, "before-witnesses")
	logPub := filepath.Join(g.dir, "keys", "ledger.pub")
	logKey, err := os.ReadFile(logPub)
	if err != nil {
		t.Fatal(err)
	}
	origin, _, _ := strings.Cut(strings.TrimSpace(string(logKey)), "+")

	// The rewritten history starts from this copy: the same keys, the
	// same ledger so far, nothing the witnesses have seen.
	g.stop(syscall.SIGTERM)
	forgedDir := filepath.Join(t.TempDir(), "forged")
	if out, err := exec.Command("cp", "-a", g.dir, forgedDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}

	sw := startWitnessProc(t, "sealgate-witness.client.example", logPub)
	var lwLog syncBuffer
	lw, err := testlitewitness.Start(ctx, testlitewitness.Options{Bin: bins, Dir: t.TempDir(), Name: "litewitness.client.example",
		Origin: origin, LogKey: strings.TrimSpace(string(logKey)), Rand: rand.NewChaCha8([32]byte{7}), Log: &lwLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lw.Close)
	witnesses := "SEALGATE_WITNESSES=client http://" + sw.addr + " " + sw.key + ", litewitness " + lw.URL + " " + lw.Key
	metricsAddr := freeAddr(t)
	g.env = append(g.env, witnesses, "SEALGATE_WITNESS_QUORUM=2", "SEALGATE_WITNESS_TIMEOUT=5s", "SEALGATE_METRICS_LISTEN="+metricsAddr)
	g.start()
	failing := func() float64 {
		_, series, _ := scrapeMetrics(t, metricsAddr)
		if series["sealgate_witnesses"] != 2 {
			t.Fatalf("sealgate_witnesses = %v, want 2", series["sealgate_witnesses"])
		}
		return series["sealgate_witnesses_failing"]
	}

	sendWitnessed(t, g, sink, "witnessed-1")
	waitFor(t, 60*time.Second, "both witnesses to cosign the latest checkpoint", func() bool {
		return latestCosigned(t, g, sw.key) && latestCosigned(t, g, lw.Key)
	})
	verifyArgs := []string{"--witness", sw.key, "--witness", lw.Key, "--witnesses", "2"}
	out := cliOK(t, g, append([]string{"audit", "verify-db"}, verifyArgs...)...)
	if !strings.Contains(out, "witness cosignatures: 2") {
		t.Fatalf("verify-db:\n%s", out)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.json")
	cliOK(t, g, "audit", "export", "-o", bundle)
	out = cliOK(t, g, append(append([]string{"audit", "verify", "--key", "@" + logPub}, verifyArgs...), bundle)...)
	if !strings.Contains(out, "witness cosignatures: 2") || !strings.Contains(out, keyID(sw.key)) {
		t.Fatalf("verify:\n%s", out)
	}

	// A destruction certificate carries the cosigned checkpoint.
	cliOK(t, g, "contract", "add", "C-W", "--domains", "partner.example")
	sendWitnessedTo(t, g, sink, "contract-w", extB)
	m := certPathRE.FindStringSubmatch(cliOK(t, g, "contract", "end", "C-W", "--yes"))
	if m == nil {
		t.Fatal("contract end printed no certificate")
	}
	out = cliOK(t, g, append(append([]string{"audit", "verify-certificate", "--key", "@" + logPub}, verifyArgs...), m[1])...)
	if !strings.Contains(out, "verifies") || !strings.Contains(out, "witness cosignatures: 2") {
		t.Fatalf("verify-certificate:\n%s", out)
	}

	// litewitness down: mail flows, checkpoints go on with one witness,
	// the administrators are alerted.
	beforeDown := dbInt(t, g, `SELECT MAX(size) FROM ledger_checkpoints`)
	lw.Stop()
	sendWitnessed(t, g, sink, "witness-down")
	waitFor(t, 60*time.Second, "the alert to the administrators", func() bool {
		for _, b := range systemNotices(sink.Messages(), "root@corp.example") {
			if strings.Contains(b, "The ledger's witness litewitness") && strings.Contains(b, "Mail is not affected") {
				return true
			}
		}
		return false
	})
	waitFor(t, 60*time.Second, "a checkpoint cosigned by the other witness alone", func() bool {
		return dbInt(t, g, `SELECT COUNT(*) FROM ledger_checkpoints c WHERE size > ?
			AND EXISTS (SELECT 1 FROM ledger_cosignatures WHERE size = c.size AND witness = ?)
			AND NOT EXISTS (SELECT 1 FROM ledger_cosignatures WHERE size = c.size AND witness = ?)`, beforeDown, keyID(sw.key), keyID(lw.Key)) > 0
	})
	if l := g.log.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "witness alert") {
		t.Fatalf("no error logged for the witness down:\n%s", l)
	}
	if n := failing(); n != 1 {
		t.Fatalf("with litewitness down, sealgate_witnesses_failing = %v, want 1", n)
	}
	if err := lw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "litewitness to cosign again", func() bool { return latestCosigned(t, g, lw.Key) })
	waitFor(t, 60*time.Second, "sealgate_witnesses_failing to fall to 0", func() bool { return failing() == 0 })
	waitFor(t, 60*time.Second, "the recovery notice", func() bool {
		for _, b := range systemNotices(sink.Messages(), "root@corp.example") {
			if strings.Contains(b, "The witness cosigns checkpoints again: litewitness") {
				return true
			}
		}
		return false
	})

	// The rewritten history: the copy, other mail, checkpoints signed
	// with the gateway's own key and sent to the same witnesses. While it
	// is shorter than what they cosigned, the gateway sees it was rolled
	// back (409); once longer, each witness checks the consistency proof
	// from what it cosigned, refuses it (422) and keeps it as evidence.
	g.stop(syscall.SIGTERM)
	witnessed := dbInt(t, g, `SELECT MAX(size) FROM ledger_cosignatures`)
	f := witnessedGateway(t, sink, "SEALGATE_DATA_DIR="+forgedDir, witnesses, "SEALGATE_WITNESS_QUORUM=2", "SEALGATE_WITNESS_TIMEOUT=5s")
	f.dir = forgedDir
	for i := 0; dbInt(t, f, `SELECT COALESCE(MAX(size), 0) FROM ledger_checkpoints`) <= witnessed; i++ {
		if i == 20 {
			t.Fatalf("the rewritten ledger does not grow past %d", witnessed)
		}
		sendWitnessed(t, f, sink, fmt.Sprintf("forged-%d", i))
	}
	waitFor(t, 60*time.Second, "both witnesses to refuse the rewritten history", func() bool {
		var client, lite bool
		for _, l := range strings.Split(f.log.String(), "\n") {
			if strings.Contains(l, "level=ERROR") && strings.Contains(l, "REFUSED") && strings.Contains(l, `reason="422`) {
				client = client || strings.Contains(l, "witness=client ")
				lite = lite || strings.Contains(l, "witness=litewitness ")
			}
		}
		return client && lite
	})
	if n := cosignedBy(t, f, sw.key) + cosignedBy(t, f, lw.Key); n != 0 {
		t.Fatalf("a witness cosigned the rewritten history %d times", n)
	}
	out = cliOK(t, f, "witness", "logs", "--dir", sw.dir)
	if !strings.Contains(out, "refused:     ") || strings.Contains(out, "refused:     0") {
		t.Fatalf("the witness kept no evidence:\n%s", out)
	}
	forged := filepath.Join(t.TempDir(), "forged.json")
	cliOK(t, f, "audit", "export", "-o", forged)
	if out := cliOK(t, f, "audit", "verify", "--key", "@"+logPub, forged); !strings.Contains(out, "verification succeeded") {
		t.Fatalf("the rewritten history does not verify with the gateway key alone:\n%s", out)
	}
	for _, args := range [][]string{
		append(append([]string{"audit", "verify", "--key", "@" + logPub}, verifyArgs...), forged),
		append([]string{"audit", "verify-db"}, verifyArgs...),
	} {
		out, code := cliRun(t, f, nil, args...)
		if code != 1 || !strings.Contains(out, "cosigned by 0 of the 2 witnesses required") ||
			!strings.Contains(out, "rewritten and signed again with the gateway's own key") || !strings.Contains(out, "証人による検証に失敗しました") {
			t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
}
