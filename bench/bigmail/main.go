// Command bigmail measures what one big message costs the gateway, end to
// end over SMTP, against the same durable work done without it.
//
// In one run it generates a random plaintext of -size bytes and a
// multipart/mixed message carrying it as a base64 attachment (76-column
// lines, CRLF), both on disk in a new work directory; then, for each mode:
//
//   - bdat: times `age -r <X25519 recipient> plain.bin > out.age` followed by
//     an fsync of out.age (the durable baseline, on the same file system as
//     the gateway's data directory), then starts a fresh `sealgate serve`
//     with the fs store and sends the message with BDAT (CHUNKING) in
//     -chunk chunks, pipelined;
//   - data: first times the same message as DATA through a bare go-smtp
//     server that discards it (the transport floor: go-smtp reads DATA a
//     byte at a time), then the baseline, then a fresh gateway over DATA.
//
// With -s3 it also sends the message with BDAT to a gateway using the S3
// store configured by the SEALGATE_S3_* environment variables, and times
// its baseline: `age -r` of the same plaintext piped into bench/s3upload,
// minio-go's own multipart upload with the gateway's part size (8 MiB),
// to the same store, until the upload is complete. With -count
// N every step runs N times, interleaved, and the report takes the fastest
// of each (noise on a shared machine only ever adds time) and the highest
// peak RSS.
//
// A gateway run's time is from the first byte of the message (the first
// BDAT command, or the first byte after the 354 reply) to the 250 reply,
// which the gateway gives only once the sealed object and the queue are
// durable. Its peak RSS is VmHWM of the gateway process, read after the
// reply. Every run checks that the gateway recorded exactly one sealed file
// with the plaintext's size and SHA-256. Before each timed step the page
// cache is written back (sync(2)) so that no step pays for an earlier one's
// writes; the inputs stay in the page cache for all steps alike.
//
// The client and the bare server cost the measurement little: the client
// sends the message file with sendfile(2), and the bare server and the
// gateway each run as their own process.
//
// Usage (bench/bigmail.sh wraps it):
//
//	go run ./bench/bigmail [-size 1GiB] [-modes bdat,data] [-s3] [-count N] [-dir DIR] [-sealgate BIN]
//
// It exits 1 when a target is missed, 2 on error.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"filippo.io/age"
	_ "modernc.org/sqlite"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/storage/s3"
)

// Targets from the issues (16 for BDAT on fs and S3).
const (
	maxAgeRatio   = 1.3       // BDAT time / age -r + fsync time
	maxS3Ratio    = 1.5       // BDAT to S3 time / age -r | minio-go multipart upload time
	maxFloorRatio = 1.3       // DATA time / bare go-smtp DATA time
	maxRSS        = 128 << 20 // gateway peak RSS, whatever the size
	maxS3RSS      = 96 << 20  // gateway peak RSS with the S3 store
	minPortalRate = 0.8       // portal download rate / age -d rate
	s3PartSize    = 8 << 20   // the gateway's default part size (storage/s3)
)

type options struct {
	size  int64
	chunk int64
	dir   string
	modes []string
	s3    bool
	bin   string
	s3up  string
	keep  bool
	count int
	// profile, if set, is a directory that receives a CPU profile of each
	// gateway started (SEALGATE_DEBUG_CPUPROFILE), one file per run.
	profile string
}

func main() {
	var o options
	o.size, o.chunk = 1<<30, 4<<20
	sizeFlag := func(dst *int64) func(string) error {
		return func(s string) error {
			var v config.Size
			if err := v.UnmarshalText([]byte(s)); err != nil {
				return err
			}
			if v <= 0 {
				return errors.New("must be positive")
			}
			*dst = int64(v)
			return nil
		}
	}
	flag.Func("size", "size of the attachment (plaintext), e.g. 1GiB, 256MiB (default 1GiB)", sizeFlag(&o.size))
	flag.Func("chunk", "size of each BDAT chunk (default 4MiB)", sizeFlag(&o.chunk))
	flag.StringVar(&o.dir, "dir", os.TempDir(), "directory in which a fresh work directory is made for the inputs, the age output and the gateway data directories (all on one file system); it is removed at the end")
	modes := flag.String("modes", "bdat,data,portal", "comma-separated runs against the fs store: bdat, data, portal (a decrypting download against age -d)")
	flag.BoolVar(&o.s3, "s3", false, "also run BDAT against the S3 store configured by SEALGATE_S3_* (e.g. eval \"$(scripts/s3-server)\")")
	flag.StringVar(&o.bin, "sealgate", "", "sealgate binary (default: go build ./cmd/sealgate into the work directory)")
	flag.StringVar(&o.s3up, "s3upload", "", "bench/s3upload binary for the S3 baseline (default: go build ./bench/s3upload into the work directory)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of each gateway run (SEALGATE_DEBUG_CPUPROFILE) into this directory: <run>-<n>.pprof")
	flag.IntVar(&o.count, "count", 1, "rounds: every timed step runs this many times, interleaved, and the fastest counts (the machine is shared)")
	sink := flag.Bool("bare-sink", false, "internal: run the bare go-smtp server that discards messages")
	flag.Parse()
	if *sink {
		if err := runSink(); err != nil {
			fmt.Fprintln(os.Stderr, "bigmail:", err)
			os.Exit(2)
		}
		return
	}
	if o.count < 1 {
		fmt.Fprintln(os.Stderr, "bigmail: -count must be at least 1")
		os.Exit(2)
	}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "bdat", "data", "portal":
			o.modes = append(o.modes, m)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "bigmail: unknown mode %q (want bdat, data, portal)\n", m)
			os.Exit(2)
		}
	}
	if o.s3 {
		if _, ok := s3.ConfigFromEnv(os.Getenv); !ok {
			fmt.Fprintln(os.Stderr, "bigmail: -s3 needs SEALGATE_S3_ENDPOINT and friends (eval \"$(scripts/s3-server)\")")
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ok, err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bigmail:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// sample is one timed run.
type sample struct {
	elapsed time.Duration
	tail    time.Duration // from the client's last write to the reply
	hwm     int64         // gateway peak RSS (VmHWM)
	cpu     time.Duration // gateway CPU time (user+system) over its life
}

// row is one line of the report: the samples of one kind of run.
type row struct {
	name    string
	mode    string // "bdat" or "data" for a gateway run, "" otherwise
	s3      bool
	samples []sample
}

func (r *row) add(s sample) { r.samples = append(r.samples, s) }

// best is the fastest sample (noise on a shared machine only adds time), with
// the highest peak RSS of all samples.
func (r *row) best() sample {
	b := r.samples[0]
	for _, s := range r.samples[1:] {
		if s.elapsed < b.elapsed {
			b.elapsed, b.tail, b.cpu = s.elapsed, s.tail, s.cpu
		}
		b.hwm = max(b.hwm, s.hwm)
	}
	return b
}

type bench struct {
	o     options
	work  string
	bin   string
	s3up  string
	in    *input
	recip string // X25519 recipient for the baseline
	// loadStart is the 1-minute load average when the run started: the
	// machine is shared, and other work inflates the gateway (which needs
	// more than one core) more than the baseline and the floor.
	loadStart string
	log       func(format string, args ...any)
	started   int // gateways started, to name their CPU profiles
}

// profileSetting adds the gateway's CPU profile path to settings when
// profiles were asked for.
func (b *bench) profileSetting(settings map[string]string, name string) {
	if b.o.profile == "" {
		return
	}
	b.started++
	settings["SEALGATE_DEBUG_CPUPROFILE"] = filepath.Join(b.o.profile, fmt.Sprintf("%s-%d.pprof", strings.NewReplacer(" ", "-", ",", "").Replace(name), b.started))
}

func run(ctx context.Context, o options) (bool, error) {
	if _, err := exec.LookPath("age"); err != nil {
		return false, errors.New("failed to find age on PATH (the baseline is the stock age CLI; install it, e.g. apt-get install age)")
	}
	work, err := os.MkdirTemp(o.dir, "sealgate-bigmail-")
	if err != nil {
		return false, fmt.Errorf("failed to create work directory: %w", err)
	}
	if o.keep {
		defer fmt.Fprintln(os.Stderr, "bigmail: kept", work)
	} else {
		defer os.RemoveAll(work)
	}
	b := &bench{o: o, work: work, bin: o.bin, s3up: o.s3up, log: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bigmail: "+format+"\n", args...)
	}}

	id, err := age.GenerateX25519Identity()
	if err != nil {
		return false, fmt.Errorf("failed to generate the baseline's age key: %w", err)
	}
	b.recip = id.Recipient().String()

	if b.bin == "" {
		b.bin = filepath.Join(work, "sealgate")
		b.log("building sealgate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "github.com/sealgate/sealgate/cmd/sealgate")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return false, fmt.Errorf("failed to build sealgate: %w", err)
		}
	}
	if b.s3up == "" && o.s3 {
		b.s3up = filepath.Join(work, "s3upload")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.s3up, "github.com/sealgate/sealgate/bench/s3upload")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return false, fmt.Errorf("failed to build s3upload: %w", err)
		}
	}

	b.loadStart = loadAvg()
	b.log("generating %s of plaintext and the message in %s", mib(o.size), work)
	t := time.Now()
	if b.in, err = generate(work, o.size); err != nil {
		return false, err
	}
	b.log("generated in %.1fs: message %s", time.Since(t).Seconds(), mib(b.in.msgSize))

	rows := []*row{
		{name: "baseline: age -r + fsync"},
		{name: "floor: bare go-smtp, DATA"},
		{name: "baseline: age -r | minio-go upload", s3: true},
		{name: "sealgate, BDAT, fs store", mode: "bdat"},
		{name: "sealgate, DATA, fs store", mode: "data"},
		{name: "sealgate, BDAT, s3 store", mode: "bdat", s3: true},
		{name: "baseline: age -d > /dev/null"},
		{name: "sealgate portal download", mode: "portal"},
	}
	baseline, floor, s3base, ageD, portalRow := rows[0], rows[1], rows[2], rows[6], rows[7]
	var portal *portalRun
	if slices.Contains(o.modes, "portal") {
		b.log("portal: sealing the message for the download runs")
		if portal, err = b.portalSetup(ctx); err != nil {
			return false, err
		}
		defer portal.close()
	}
	for i := 0; i < o.count; i++ {
		if o.count > 1 {
			b.log("round %d of %d", i+1, o.count)
		}
		if portal != nil {
			smp, err := b.ageDecrypt(ctx, portal)
			if err != nil {
				return false, err
			}
			ageD.add(smp)
			if smp, err = b.portalDownload(ctx, portal); err != nil {
				return false, err
			}
			portalRow.add(smp)
		}
		for _, r := range rows[3:6] {
			if r.s3 && !o.s3 || !r.s3 && !slices.Contains(o.modes, r.mode) {
				continue
			}
			if r.mode == "data" {
				smp, err := b.floor(ctx)
				if err != nil {
					return false, err
				}
				floor.add(smp)
			}
			if !r.s3 {
				smp, err := b.baseline(ctx)
				if err != nil {
					return false, err
				}
				baseline.add(smp)
			} else {
				smp, err := b.s3Baseline(ctx)
				if err != nil {
					return false, err
				}
				s3base.add(smp)
			}
			smp, err := b.gateway(ctx, r.name, r.mode, r.s3)
			if err != nil {
				return false, err
			}
			r.add(smp)
		}
	}
	return b.report(rows), nil
}

// baseline times the stock age CLI encrypting the plaintext into a file on
// the work directory's file system, then an fsync of that file: the durable
// work of sealing without the gateway.
func (b *bench) baseline(ctx context.Context) (sample, error) {
	var r sample
	out := filepath.Join(b.work, "baseline.age")
	defer os.Remove(out)
	syscall.Sync()
	f, err := os.Create(out)
	if err != nil {
		return r, fmt.Errorf("failed to create baseline output: %w", err)
	}
	defer f.Close()
	var stderr capBuffer
	cmd := exec.CommandContext(ctx, "age", "-r", b.recip, b.in.plainPath)
	cmd.Stdout, cmd.Stderr = f, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("failed to run age: %w: %s", err, stderr.String())
	}
	if err := f.Sync(); err != nil {
		return r, fmt.Errorf("failed to sync baseline output: %w", err)
	}
	r.elapsed = time.Since(start)
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	fi, err := f.Stat()
	if err != nil {
		return r, fmt.Errorf("failed to stat baseline output: %w", err)
	}
	if fi.Size() <= b.in.plainSize {
		return r, fmt.Errorf("failed to check baseline output: %d bytes for %d of plaintext", fi.Size(), b.in.plainSize)
	}
	b.log("age -r + fsync: %.2fs, age CPU %.1fs", r.elapsed.Seconds(), r.cpu.Seconds())
	return r, nil
}

// s3Baseline times the stock age CLI encrypting the plaintext into a pipe
// read by bench/s3upload, which uploads it to the S3 store with minio-go's
// multipart upload in parts of the gateway's size: from the start of age
// to the end of the upload (CompleteMultipartUpload answered).
func (b *bench) s3Baseline(ctx context.Context) (sample, error) {
	var r sample
	key := fmt.Sprintf("bigmail-baseline/%d.age", time.Now().UnixNano())
	ageCmd := exec.CommandContext(ctx, "age", "-r", b.recip, b.in.plainPath)
	up := exec.CommandContext(ctx, b.s3up, "-key", key, "-part", fmt.Sprint(s3PartSize))
	pipe, err := ageCmd.StdoutPipe()
	if err != nil {
		return r, fmt.Errorf("failed to make the baseline pipe: %w", err)
	}
	var ageErr, upErr, upOut capBuffer
	ageCmd.Stderr = &ageErr
	up.Stdin, up.Stdout, up.Stderr = pipe, &upOut, &upErr
	syscall.Sync()
	start := time.Now()
	if err := ageCmd.Start(); err != nil {
		return r, fmt.Errorf("failed to run age: %w", err)
	}
	if err := up.Run(); err != nil {
		ageCmd.Process.Kill()
		ageCmd.Wait()
		return r, fmt.Errorf("failed to run s3upload: %w: %s", err, upErr.String())
	}
	if err := ageCmd.Wait(); err != nil {
		return r, fmt.Errorf("failed to run age: %w: %s", err, ageErr.String())
	}
	r.elapsed = time.Since(start)
	r.cpu = ageCmd.ProcessState.UserTime() + ageCmd.ProcessState.SystemTime() + up.ProcessState.UserTime() + up.ProcessState.SystemTime()
	if ru, ok := up.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.hwm = ru.Maxrss << 10
	}
	size, err := strconv.ParseInt(strings.TrimSpace(upOut.String()), 10, 64)
	if err != nil || size <= b.in.plainSize {
		return r, fmt.Errorf("failed to check the baseline upload: %q for %d bytes of plaintext", upOut.String(), b.in.plainSize)
	}
	if out, err := exec.CommandContext(ctx, b.s3up, "-delete", key).CombinedOutput(); err != nil {
		b.log("could not remove %s from the bucket: %v: %s", key, err, out)
	}
	b.log("age -r | s3upload: %.2fs, CPU %.1fs (age and s3upload), s3upload peak RSS %s", r.elapsed.Seconds(), r.cpu.Seconds(), mib(r.hwm))
	return r, nil
}

// floor times the message as DATA through a bare go-smtp server that
// discards it.
func (b *bench) floor(ctx context.Context) (sample, error) {
	var r sample
	s, err := startSink(ctx)
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			s.stop()
		}
	}()
	f, err := os.Open(b.in.msgPath)
	if err != nil {
		return r, fmt.Errorf("failed to open message: %w", err)
	}
	defer f.Close()
	c, err := dial(s.addr)
	if err != nil {
		return r, err
	}
	if err := c.envelope(sender, recipient); err != nil {
		c.close()
		return r, err
	}
	syscall.Sync()
	r.elapsed, r.tail, _, err = c.sendDATA(f)
	c.close()
	if err != nil {
		return r, fmt.Errorf("failed to send to the bare server: %w", err)
	}
	r.cpu = s.stop()
	stopped = true
	b.log("bare go-smtp DATA: %.2fs (tail %.2fs), CPU %.1fs", r.elapsed.Seconds(), r.tail.Seconds(), r.cpu.Seconds())
	return r, nil
}

// gateway sends the message to a fresh sealgate process and checks what it
// recorded.
func (b *bench) gateway(ctx context.Context, name, mode string, useS3 bool) (sample, error) {
	var r sample
	dataDir := filepath.Join(b.work, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return r, fmt.Errorf("failed to create data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	if !useS3 {
		same, err := sameFS(dataDir, b.work)
		if err != nil {
			return r, err
		}
		if !same {
			return r, fmt.Errorf("failed to keep one file system: %s and %s differ", dataDir, b.work)
		}
	}
	settings := map[string]string{
		"SEALGATE_DATA_DIR":         dataDir,
		"SEALGATE_INTERNAL_DOMAINS": "corp.example",
		"SEALGATE_HOSTNAME":         "gw.corp.example",
		"SEALGATE_MAX_MESSAGE_SIZE": fmt.Sprint(b.in.msgSize + 64<<20),
		"SEALGATE_LOG_LEVEL":        "warn",
	}
	if useS3 {
		for _, kv := range os.Environ() {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "SEALGATE_S3_") {
				settings[k] = v
			}
		}
		settings["SEALGATE_STORAGE"] = "s3"
	} else {
		settings["SEALGATE_STORAGE"] = "fs"
	}
	b.profileSetting(settings, name)
	g, err := startGateway(ctx, b.bin, settings)
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			g.stop()
		}
	}()
	f, err := os.Open(b.in.msgPath)
	if err != nil {
		return r, fmt.Errorf("failed to open message: %w", err)
	}
	defer f.Close()
	syscall.Sync()
	c, err := dial(g.smtpAddr)
	if err != nil {
		return r, err
	}
	if err := c.envelope(sender, recipient); err != nil {
		c.close()
		return r, err
	}
	var rep reply
	if mode == "bdat" {
		r.elapsed, r.tail, rep, err = c.sendBDAT(f, b.in.msgSize, b.o.chunk)
	} else {
		r.elapsed, r.tail, rep, err = c.sendDATA(f)
	}
	c.close()
	if err != nil {
		return r, fmt.Errorf("failed to send to sealgate (%s): %w\n%s", name, err, g.log)
	}
	// Let the delivery of the (small) notices that follows the 250 run too,
	// so that the peak covers the whole life of the message in the gateway.
	time.Sleep(500 * time.Millisecond)
	if r.hwm, _, err = g.memory(); err != nil {
		return r, err
	}
	r.cpu = g.stop()
	stopped = true
	b.log("%s: %.2fs (tail %.2fs), peak RSS %s, CPU %.1fs (%s)", name, r.elapsed.Seconds(), r.tail.Seconds(), mib(r.hwm), r.cpu.Seconds(), rep)
	key, err := b.verify(dataDir)
	if err != nil {
		return r, fmt.Errorf("failed to verify %s: %w", name, err)
	}
	if useS3 {
		b.removeS3(ctx, key)
	}
	return r, nil
}

// verify checks that the gateway recorded one sealed file with the
// plaintext's size and SHA-256, and returns its object key.
func (b *bench) verify(dataDir string) (string, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "sealgate.db")+"?mode=ro")
	if err != nil {
		return "", fmt.Errorf("failed to open the gateway database: %w", err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT size, sha256, cipher_size, object_key FROM files`)
	if err != nil {
		return "", fmt.Errorf("failed to query sealed files: %w", err)
	}
	defer rows.Close()
	var n int
	var key string
	for rows.Next() {
		var size, csize int64
		var sum string
		if err := rows.Scan(&size, &sum, &csize, &key); err != nil {
			return "", fmt.Errorf("failed to read sealed file: %w", err)
		}
		n++
		if size != b.in.plainSize || sum != b.in.plainHash || csize <= size {
			return "", fmt.Errorf("failed to match the plaintext: sealed file of %d bytes (cipher %d), sha256 %s; want %d bytes, sha256 %s",
				size, csize, sum, b.in.plainSize, b.in.plainHash)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("failed to read sealed files: %w", err)
	}
	if n != 1 {
		return "", fmt.Errorf("failed to find one sealed file: %d recorded", n)
	}
	return key, nil
}

// removeS3 deletes the run's object from the bucket (best effort).
func (b *bench) removeS3(ctx context.Context, key string) {
	cfg, _ := s3.ConfigFromEnv(os.Getenv)
	st, err := s3.Open(ctx, cfg)
	if err != nil {
		b.log("could not remove %s from the bucket: %v", key, err)
		return
	}
	defer st.Close()
	if err := st.Delete(ctx, key); err != nil {
		b.log("could not remove %s from the bucket: %v", key, err)
	}
}

func sameFS(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("failed to stat %s: %w", a, err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("failed to stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev, nil
}

func (b *bench) report(rows []*row) bool {
	fmt.Printf("\nbigmail: %s attachment, message %s (base64, 76 columns, CRLF); BDAT chunks %s; %s\n",
		mib(b.in.plainSize), mib(b.in.msgSize), mib(b.o.chunk), runtime.Version())
	fmt.Printf("load average (1 min) at start %s, at end %s on %d CPUs: other work on the machine slows the gateway (>1 core) more than the floor (1 core)\n",
		b.loadStart, loadAvg(), runtime.NumCPU())
	fmt.Printf("time: first message byte → 250 reply (baseline: start of age → end of fsync); the fastest of n runs; RSS: the highest\n")
	fmt.Printf("portal download: POST → last plaintext byte, read and discarded (baseline: age -d of the stored file.age with the transfer identity, to /dev/null); its RSS: the gateway's peak during the download\n")
	fmt.Printf("MiB/s: message bytes sent (baselines: plaintext bytes); ×base: seconds / the fastest baseline of the same store (fs: age -r + fsync; s3: age -r | minio-go upload); ×floor: / the bare go-smtp floor\n")
	fmt.Printf("tail: from the client's last write to the reply (work not overlapped with the transfer); CPU: user+system of the server process (baselines: age, and s3upload)\n\n")
	var ageBest, floorBest, s3Best time.Duration
	if len(rows[0].samples) > 0 {
		ageBest = rows[0].best().elapsed
	}
	if len(rows[1].samples) > 0 {
		floorBest = rows[1].best().elapsed
	}
	if len(rows[2].samples) > 0 {
		s3Best = rows[2].best().elapsed
	}
	portalRow := rows[7]
	var ageDBest time.Duration
	if len(rows[6].samples) > 0 {
		ageDBest = rows[6].best().elapsed
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tn\tseconds\tMiB/s\t×base\t×floor\ttail s\tpeak RSS MiB\tCPU s\ttarget\tresult\t")
	ok := true
	for _, r := range rows {
		if len(r.samples) == 0 {
			continue
		}
		s := r.best()
		sec := s.elapsed.Seconds()
		rate := float64(b.in.msgSize) / (1 << 20) / sec
		if r.mode == "" || r.mode == "portal" {
			rate = float64(b.in.plainSize) / (1 << 20) / sec
		}
		ratio := func(base time.Duration, modes ...string) string {
			if !slices.Contains(modes, r.mode) || base == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", sec/base.Seconds())
		}
		baseRatio := ratio(ageBest, "bdat", "data")
		if r.s3 {
			baseRatio = ratio(s3Best, "bdat")
		}
		if r == portalRow {
			baseRatio = ratio(ageDBest, "portal")
		}
		mem, cpu, tail, target, verdict := "-", "-", "-", "-", "-"
		if r.mode == "bdat" || r.mode == "data" || r == rows[1] {
			tail = fmt.Sprintf("%.2f", s.tail.Seconds())
		}
		if r == rows[2] {
			mem = fmt.Sprintf("%.1f", float64(s.hwm)/(1<<20)) // s3upload's
		}
		if s.cpu > 0 {
			cpu = fmt.Sprintf("%.1f", s.cpu.Seconds())
		}
		if r.mode != "" {
			mem = fmt.Sprintf("%.1f", float64(s.hwm)/(1<<20))
			pass := s.hwm <= maxRSS
			switch {
			case r.s3:
				target = fmt.Sprintf("×base ≤ %.1f, RSS ≤ %s", maxS3Ratio, mib(maxS3RSS))
				pass = s.hwm <= maxS3RSS && s3Best > 0 && sec <= maxS3Ratio*s3Best.Seconds()
			case r.mode == "bdat":
				target = fmt.Sprintf("×age ≤ %.1f, RSS ≤ %s", maxAgeRatio, mib(maxRSS))
				pass = pass && sec <= maxAgeRatio*ageBest.Seconds()
			case r.mode == "portal":
				target = fmt.Sprintf("rate ≥ %.1f× age -d (×base ≤ %.2f)", minPortalRate, 1/minPortalRate)
				pass = pass && ageDBest > 0 && sec*minPortalRate <= ageDBest.Seconds()
			case r.mode == "data":
				target = fmt.Sprintf("×floor ≤ %.1f, RSS ≤ %s", maxFloorRatio, mib(maxRSS))
				pass = pass && sec <= maxFloorRatio*floorBest.Seconds()
			}
			verdict = "PASS"
			if !pass {
				verdict, ok = "FAIL", false
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.name, len(r.samples), sec, rate, baseRatio, ratio(floorBest, "data"), tail, mem, cpu, target, verdict)
	}
	tw.Flush()
	return ok
}

// loadAvg returns the 1-minute load average, "?" if unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
