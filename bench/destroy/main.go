// Command destroy measures ending a contract: crypto-shredding every
// transfer identity and the contract key, deleting every object (every
// version), proving each absent, and issuing the signed certificate with
// its multi-proof — destroy.EndContract, the code `sealgate contract end`
// runs. It also reports the certificate's bytes per object (the file's
// size) and offline verification time in format v4 (one multi-proof,
// compressed, as issued) against the target of issue 15 (≤ 300 bytes per
// object, verified in ≤ 2 s) and, for comparison, the same certificate in
// format v3 (the same, uncompressed) and v2 (one inclusion proof per
// event), as issued before.
//
// For each store it seeds a fresh database (synchronous=FULL, as in
// production) and store with -transfers transfers as the gateway makes
// them (a message, a transfer, -files encrypted objects, -recipients
// recipients with wrapped key files, the ledger events), then times the
// destruction and checks the result: no object (no version) left, every
// key erased, the certificate verifies with the public key. It reports the
// time of each phase and objects per second, and PASS/FAIL against the
// targets of issue 16 (-target-fs 1500 objects/s on fs, -target-s3 1000
// on S3 on loopback).
//
// The S3 run uses the server named by SEALGATE_S3_* (bench/destroy.sh
// starts versitygw on loopback with scripts/s3-server); it makes its own
// bucket, with versioning on, and removes it afterwards.
//
//	go run ./bench/destroy [-transfers 10000] [-stores fs,s3] [-workers 16] [-batch 512] [-cpuprofile FILE]
//
// It exits 1 when the target is missed, 2 on error.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

type options struct {
	transfers, files, recipients, size int
	stores                             []string
	workers, batch                     int
	targetFS, targetS3                 float64
	dir, sync                          string
	profile                            string // CPU profile file name; the store's name is appended
}

type result struct {
	store      string
	objects    int
	seed       time.Duration
	total      time.Duration
	phases     map[destroy.Phase]time.Duration
	cert       time.Duration
	certBytes  int // the certificate as kept (v4: one multi-proof, compressed)
	hashes     int // in its multi-proof
	proofs     int
	verifyTime time.Duration
	v2Bytes    int // the same certificate with one inclusion proof per event (v2, before)
	v2Verify   time.Duration
	v3Bytes    int // the same certificate uncompressed (v3)
	v3Verify   time.Duration
}

func main() {
	var o options
	var stores string
	flag.IntVar(&o.transfers, "transfers", 10000, "transfers under the contract")
	flag.IntVar(&o.files, "files", 1, "files per transfer")
	flag.IntVar(&o.recipients, "recipients", 1, "recipients per transfer")
	flag.IntVar(&o.size, "size", 1024, "plaintext bytes per file")
	flag.StringVar(&stores, "stores", "fs,s3", "stores to run: fs, s3 (SEALGATE_S3_*)")
	flag.IntVar(&o.workers, "workers", 16, "concurrent deletions")
	flag.IntVar(&o.batch, "batch", 512, "ledger events per transaction at most")
	flag.Float64Var(&o.targetFS, "target-fs", 1500, "objects/s the fs run must reach (issue 16)")
	flag.Float64Var(&o.targetS3, "target-s3", 1000, "objects/s the S3 run must reach (issue 16: on loopback)")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a temporary one, removed)")
	flag.StringVar(&o.sync, "sync", "FULL", "SQLite synchronous mode")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of each destruction to this file name plus .<store>")
	flag.Parse()
	o.stores = strings.Split(stores, ",")
	os.Exit(run(o))
}

func run(o options) int {
	ctx := context.Background()
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "sealgate-destroy-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "destroy:", err)
			return 2
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var results []result
	for _, name := range o.stores {
		name = strings.TrimSpace(name)
		if name == "s3" {
			if _, ok := s3.ConfigFromEnv(os.Getenv); !ok {
				fmt.Fprintln(os.Stderr, "destroy: SEALGATE_S3_ENDPOINT is not set; skipping S3 (bench/destroy.sh starts versitygw)")
				continue
			}
		}
		fmt.Fprintf(os.Stderr, "== %s: seeding %d transfers × %d files ...\n", name, o.transfers, o.files)
		r, err := runOne(ctx, o, name, filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintf(os.Stderr, "destroy: %s: %v\n", name, err)
			return 2
		}
		results = append(results, r)
	}
	return report(o, results)
}

// openStore opens the store and returns it with a function that counts
// the objects (every version) left under objects/, and a clean-up.
func openStore(ctx context.Context, name, dir string) (storage.Store, func(context.Context) (int, error), func(), error) {
	switch name {
	case "fs":
		st, err := fs.Open(filepath.Join(dir, "objects"))
		left := func(ctx context.Context) (int, error) {
			n := 0
			err := st.List(ctx, "sealed/", func(storage.Info) error { n++; return nil })
			return n, err
		}
		return st, left, func() {}, err
	case "s3":
		cfg, _ := s3.ConfigFromEnv(os.Getenv)
		var b [4]byte
		rand.Read(b[:])
		if cfg.Bucket == "" {
			cfg.Bucket = "sealgate"
		}
		cfg.Bucket += "-destroy-" + hex.EncodeToString(b[:])
		st, err := s3.Open(ctx, cfg)
		if err != nil {
			return nil, nil, nil, err
		}
		cl, err := s3test.Client(cfg)
		if err != nil {
			st.Close()
			return nil, nil, nil, err
		}
		if err := cl.EnableVersioning(ctx, cfg.Bucket); err != nil {
			fmt.Fprintf(os.Stderr, "destroy: versioning not enabled (%v); deleting plain objects\n", err)
		}
		cleanup := func() {
			for obj := range cl.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true, WithVersions: true}) {
				if obj.Err == nil {
					cl.RemoveObject(ctx, cfg.Bucket, obj.Key, minio.RemoveObjectOptions{VersionID: obj.VersionID, GovernanceBypass: true})
				}
			}
			cl.RemoveBucket(ctx, cfg.Bucket)
			st.Close()
		}
		left := func(ctx context.Context) (int, error) {
			n := 0
			for o := range cl.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: "sealed/", Recursive: true, WithVersions: true}) {
				if o.Err != nil {
					return 0, o.Err
				}
				n++
			}
			return n, nil
		}
		return st, left, cleanup, nil
	}
	return nil, nil, nil, fmt.Errorf("unknown store %q", name)
}

func runOne(ctx context.Context, o options, name, dir string) (result, error) {
	r := result{store: name, objects: o.transfers * o.files, phases: map[destroy.Phase]time.Duration{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return r, err
	}
	db, err := database.Open(ctx, filepath.Join(dir, "sealgate.db"), database.Options{Synchronous: o.sync})
	if err != nil {
		return r, err
	}
	defer db.Close()
	st, countLeft, cleanup, err := openStore(ctx, name, dir)
	if err != nil {
		return r, err
	}
	defer cleanup()
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	led, err := audit.New(audit.Options{Origin: "bench.sealgate/ledger", Store: st, Names: true})
	if err != nil {
		return r, err
	}
	skey, vkey, err := audit.GenerateKey(rand.Reader, "bench.sealgate")
	if err != nil {
		return r, err
	}
	signer, _ := audit.NewSigner(skey)
	c, err := contract.Create(ctx, db, keys, led, contract.Spec{Code: "C-BENCH", Name: "benchmark", Domains: []string{"client.example"},
		DownloadLimit: contract.DefaultLimit}, "bench", time.Now())
	if err != nil {
		return r, err
	}
	var rcpts []string
	for i := range o.recipients {
		rcpts = append(rcpts, fmt.Sprintf("r%d@client.example", i))
	}
	t0 := time.Now()
	if _, err := seed.Transfers(ctx, seed.Deps{DB: db, Store: st, Ledger: led, Rand: rand.Reader}, c, seed.Options{
		Transfers: o.transfers, FilesPerTransfer: o.files, Recipients: rcpts, FileSize: o.size, Workers: 32,
	}); err != nil {
		return r, fmt.Errorf("failed to seed: %w", err)
	}
	r.seed = time.Since(t0)
	fmt.Fprintf(os.Stderr, "   seeded in %s; ending the contract ...\n", r.seed.Round(time.Millisecond))

	var mu sync.Mutex
	started := map[destroy.Phase]time.Time{}
	d := destroy.Deps{
		DB: db, Store: st, Ledger: led, Log: slog.New(slog.DiscardHandler), Workers: o.workers, Batch: o.batch,
		Progress: func(p destroy.Phase, done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := started[p]; !ok {
				started[p] = time.Now()
			}
			if done == total {
				r.phases[p] = time.Since(started[p])
			}
		},
		Signer: signer, CertDir: filepath.Join(dir, "certificates"), Storage: name, Owner: "bench/1",
	}
	if o.profile != "" {
		f, err := os.Create(o.profile + "." + name)
		if err != nil {
			return r, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, err
		}
	}
	t1 := time.Now()
	iss, err := destroy.EndContract(ctx, d, c.Code, "bench", "benchmark")
	if o.profile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return r, fmt.Errorf("failed to end the contract: %w", err)
	}
	r.total = time.Since(t1)
	var sum time.Duration
	for _, v := range r.phases {
		sum += v
	}
	r.cert = r.total - sum // contract.ended, contract key, checkpoint, certificate
	r.certBytes = len(iss.KeptJSON)
	r.proofs = len(iss.Certificate.Proofs)
	r.hashes = len(iss.Certificate.Hashes)

	// Check the result.
	t2 := time.Now()
	if _, _, err := audit.VerifyCertificate(iss.KeptJSON, vkey); err != nil {
		return r, fmt.Errorf("the certificate does not verify: %w", err)
	}
	r.verifyTime = time.Since(t2)
	if _, _, err := audit.VerifyCertificate(iss.JSON, vkey); err != nil {
		return r, fmt.Errorf("the client's copy does not verify: %w", err)
	}
	// Before: the same certificate uncompressed (v3), and with one
	// inclusion proof per event (v2).
	v3, err := audit.ParseCertificate(iss.KeptJSON)
	if err != nil {
		return r, err
	}
	v3.Format = audit.CertificateFormatV3
	v3data, err := audit.SignCertificate(v3, signer)
	if err != nil {
		return r, err
	}
	r.v3Bytes = len(v3data)
	t4 := time.Now()
	if _, _, err := audit.VerifyCertificate(v3data, vkey); err != nil {
		return r, fmt.Errorf("the v3 certificate does not verify: %w", err)
	}
	r.v3Verify = time.Since(t4)
	v2, err := audit.ParseCertificate(iss.KeptJSON)
	if err != nil {
		return r, err
	}
	cp, err := audit.OpenCheckpoint([]byte(v2.Checkpoint), vkey)
	if err != nil {
		return r, err
	}
	idxs := make([]int64, len(v2.Proofs))
	for i, p := range v2.Proofs {
		idxs[i] = p.Index
	}
	if v2.Proofs, err = led.ProveEachEvent(ctx, db.Read(), idxs, cp); err != nil {
		return r, err
	}
	v2.Format, v2.Hashes = audit.CertificateFormatV2, nil
	v2data, err := audit.SignCertificate(v2, signer)
	if err != nil {
		return r, err
	}
	r.v2Bytes = len(v2data)
	t3 := time.Now()
	if _, _, err := audit.VerifyCertificate(v2data, vkey); err != nil {
		return r, fmt.Errorf("the v2 certificate does not verify: %w", err)
	}
	r.v2Verify = time.Since(t3)
	if iss.Certificate.Summary.Objects != r.objects {
		return r, fmt.Errorf("the certificate covers %d objects, want %d", iss.Certificate.Summary.Objects, r.objects)
	}
	left, err := countLeft(ctx)
	if err != nil {
		return r, err
	}
	var keysLeft int
	db.Read().QueryRow(`SELECT COUNT(*) FROM recipients WHERE key_wrapped IS NOT NULL`).Scan(&keysLeft)
	if left != 0 || keysLeft != 0 {
		return r, fmt.Errorf("%d objects (versions) and %d keys left", left, keysLeft)
	}
	return r, nil
}

func report(o options, rs []result) int {
	if len(rs) == 0 {
		fmt.Fprintln(os.Stderr, "destroy: nothing ran")
		return 2
	}
	fmt.Printf("ending a contract: %d transfers × %d file(s) × %d recipient(s), %d-byte files; %d workers, ≤%d events/transaction; %d CPUs, %s\n",
		o.transfers, o.files, o.recipients, o.size, o.workers, o.batch, runtime.NumCPU(), runtime.Version())
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "store\tobjects\tkeys\tdelete\tverify\tcertificate\ttotal\tobjects/s\tcert size\tproofs\toffline verify\t")
	code := 0
	for _, r := range rs {
		rate := float64(r.objects) / r.total.Seconds()
		target := o.targetFS
		if r.store == "s3" {
			target = o.targetS3
		}
		verdict := fmt.Sprintf("PASS (≥ %.0f/s)", target)
		if rate < target {
			verdict = fmt.Sprintf("FAIL (< %.0f/s)", target)
			code = 1
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%.0f %s\t%.1f MiB\t%d\t%s\t\n", r.store, r.objects,
			rd(r.phases[destroy.PhaseKeys]), rd(r.phases[destroy.PhaseDelete]), rd(r.phases[destroy.PhaseVerify]), rd(r.cert), rd(r.total),
			rate, verdict, float64(r.certBytes)/(1<<20), r.proofs, rd(r.verifyTime))
	}
	tw.Flush()
	fmt.Println("\ncertificate (as kept; bytes: the file's size), before (v2: one inclusion proof per event; v3: one multi-proof)")
	fmt.Println("and after (v4: v3 compressed); target ≤ 300 bytes/object, verified in ≤ 2 s:")
	tw = tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "store	objects	events	v2 bytes/object	v2 verify	v3 bytes/object	v3 hashes	v3 verify	v4 bytes/object	v4 verify	target	")
	for _, r := range rs {
		per := float64(r.certBytes) / float64(r.objects)
		verdict := "PASS"
		if per > 300 || r.verifyTime > 2*time.Second {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%.0f\t%d\t%s\t%.0f\t%s\t%s\t\n", r.store, r.objects, r.proofs,
			float64(r.v2Bytes)/float64(r.objects), rd(r.v2Verify), float64(r.v3Bytes)/float64(r.objects), r.hashes, rd(r.v3Verify),
			per, rd(r.verifyTime), verdict)
	}
	tw.Flush()
	return code
}

func rd(d time.Duration) string { return d.Round(time.Millisecond).String() }
