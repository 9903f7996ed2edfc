package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
	"github.com/sealgate/sealgate/storage/storagetest"
)

func open(t testing.TB, cfg s3.Config) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t testing.TB, cfg s3.Config) *minio.Client {
	t.Helper()
	c, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "conformance")
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, cfg) })
}

// TestConformanceVersioned runs the suite on a bucket that keeps versions,
// so that every Delete and every replaced or failed Put goes through the
// version-aware paths.
func TestConformanceVersioned(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "versioned")
	open(t, cfg) // creates the bucket
	if err := client(t, cfg).EnableVersioning(context.Background(), cfg.Bucket); err != nil {
		t.Skipf("server does not support versioning: %v", err)
	}
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, cfg) })
}

// TestConformanceMinPartSize uses 5 MiB parts so that the suite's larger
// objects take several parts.
func TestConformanceMinPartSize(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "smallparts")
	cfg.PartSize = s3.MinPartSize
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, cfg) })
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{
		"SEALGATE_S3_ENDPOINT":   "http://127.0.0.1:7070",
		"SEALGATE_S3_BUCKET":     "b",
		"SEALGATE_S3_ACCESS_KEY": "ak",
		"SEALGATE_S3_SECRET_KEY": "sk",
		"SEALGATE_S3_REGION":     "eu-central-1",
		"SEALGATE_S3_INSECURE":   "1",
		"SEALGATE_S3_PATH_STYLE": "true",
	}
	cfg, ok := s3.ConfigFromEnv(func(k string) string { return env[k] })
	want := s3.Config{Endpoint: "http://127.0.0.1:7070", Bucket: "b", AccessKey: "ak", SecretKey: "sk",
		Region: "eu-central-1", Insecure: true, PathStyle: true}
	if !ok || cfg != want {
		t.Errorf("ConfigFromEnv = %+v, %v; want %+v, true", cfg, ok, want)
	}
	env["SEALGATE_S3_INSECURE"], env["SEALGATE_S3_PATH_STYLE"] = "false", ""
	cfg, _ = s3.ConfigFromEnv(func(k string) string { return env[k] })
	if cfg.Insecure || cfg.PathStyle {
		t.Errorf("ConfigFromEnv with false flags = %+v", cfg)
	}
	if _, ok := s3.ConfigFromEnv(func(string) string { return "" }); ok {
		t.Error("ConfigFromEnv without endpoint reported ok")
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	base := s3.Config{Endpoint: "127.0.0.1:1", Bucket: "b"}
	for name, mut := range map[string]func(*s3.Config){
		"no bucket":      func(c *s3.Config) { c.Bucket = "" },
		"no endpoint":    func(c *s3.Config) { c.Endpoint = "" },
		"part too small": func(c *s3.Config) { c.PartSize = 1 << 20 },
		"bad lock mode":  func(c *s3.Config) { c.ObjectLock.Mode = "FOREVER" },
		"bad scheme":     func(c *s3.Config) { c.Endpoint = "ftp://127.0.0.1:1" },
		"https+insecure": func(c *s3.Config) { c.Endpoint = "https://127.0.0.1:1"; c.Insecure = true },
		"path":           func(c *s3.Config) { c.Endpoint = "http://127.0.0.1:1/x" },
	} {
		cfg := base
		mut(&cfg)
		if _, err := s3.Open(context.Background(), cfg); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// TestOpenServerDown: nothing listens on the port.
func TestOpenServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := s3.Config{Endpoint: "http://" + addr, Bucket: "sealgate-down", AccessKey: "a", SecretKey: "b", PathStyle: true}
	start := time.Now()
	_, err = s3.Open(context.Background(), cfg)
	elapsed := time.Since(start)
	t.Logf("Open against a closed port failed after %v: %v", elapsed.Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Open succeeded with no server")
	}
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("error does not wrap ErrUnavailable: %v", err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), cfg.Bucket) {
		t.Errorf("error does not name endpoint and bucket: %v", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Open took %v to fail, want a few seconds at most", elapsed)
	}
}

// TestOpenServerHangs: the server accepts connections and never answers.
// Open must respect its context's deadline.
func TestOpenServerHangs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // hold it open, say nothing
		}
	}()
	cfg := s3.Config{Endpoint: "http://" + l.Addr().String(), Bucket: "sealgate-hang", AccessKey: "a", SecretKey: "b", PathStyle: true, Region: "us-east-1"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = s3.Open(ctx, cfg)
	elapsed := time.Since(start)
	t.Logf("Open against a silent server failed after %v: %v", elapsed.Round(time.Millisecond), err)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Open = %v, want ErrUnavailable", err)
	}
	if elapsed > 4*time.Second {
		t.Errorf("Open took %v with a 2s deadline", elapsed)
	}
}

func TestOpenStoppedServer(t *testing.T) {
	srv := s3test.Start(t)
	if !srv.Managed() {
		t.Skip("the server comes from the environment; cannot stop it")
	}
	cfg := srv.Bucket(t, "stopped")
	open(t, cfg)
	srv.Stop()
	start := time.Now()
	_, err := s3.Open(context.Background(), cfg)
	elapsed := time.Since(start)
	t.Logf("Open against a stopped versitygw failed after %v: %v", elapsed.Round(time.Millisecond), err)
	if !errors.Is(err, storage.ErrUnavailable) || elapsed > 5*time.Second {
		t.Errorf("Open = %v after %v, want ErrUnavailable within 5s", err, elapsed)
	}
	srv.Start()
	open(t, cfg)
}

func TestOpenWrongSecret(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "wrongsecret")
	open(t, cfg)
	cfg.SecretKey = "not-the-secret"
	start := time.Now()
	_, err := s3.Open(context.Background(), cfg)
	t.Logf("Open with a wrong secret failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, s3.ErrAccessDenied) || errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Open = %v, want ErrAccessDenied (permanent)", err)
	}
	if err != nil && !strings.Contains(err.Error(), cfg.Bucket) {
		t.Errorf("error does not name the bucket: %v", err)
	}
}

// TestOpenLimitedUser: an IAM account that may not use the bucket.
func TestOpenLimitedUser(t *testing.T) {
	srv := s3test.Start(t)
	if !srv.Managed() {
		t.Skip("the server comes from the environment; cannot create users")
	}
	cfg := srv.Bucket(t, "limited")
	open(t, cfg)
	if err := srv.CreateUser("limited-user", "limited-user-secret", "user"); err != nil {
		t.Fatal(err)
	}
	cfg.AccessKey, cfg.SecretKey = "limited-user", "limited-user-secret"
	_, err := s3.Open(context.Background(), cfg)
	t.Logf("Open as a user without access: %v", err)
	if !errors.Is(err, s3.ErrAccessDenied) {
		t.Errorf("Open = %v, want ErrAccessDenied", err)
	}
}

// TestOpenReadOnlyUser: an account that may read the bucket but not write
// it fails at the probe's put, not at the first mail.
func TestOpenReadOnlyUser(t *testing.T) {
	srv := s3test.Start(t)
	if !srv.Managed() {
		t.Skip("the server comes from the environment; cannot create users")
	}
	cfg := srv.Bucket(t, "readonly")
	open(t, cfg)
	if err := srv.CreateUser("reader", "reader-secret-key", "user"); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["reader"]},`+
		`"Action":["s3:GetObject","s3:ListBucket","s3:GetBucketLocation"],"Resource":["arn:aws:s3:::%[1]s","arn:aws:s3:::%[1]s/*"]}]}`, cfg.Bucket)
	if err := client(t, cfg).SetBucketPolicy(context.Background(), cfg.Bucket, policy); err != nil {
		t.Skipf("server does not accept bucket policies: %v", err)
	}
	cfg.AccessKey, cfg.SecretKey = "reader", "reader-secret-key"
	_, err := s3.Open(context.Background(), cfg)
	t.Logf("Open as a read-only user: %v", err)
	if !errors.Is(err, s3.ErrAccessDenied) || !strings.Contains(err.Error(), "probe put") {
		t.Errorf("Open = %v, want ErrAccessDenied from the probe's put", err)
	}
}

// slowSource produces n bytes; after stopAt bytes it calls stop once.
type slowSource struct {
	n, done, stopAt int64
	stop            func()
}

func (s *slowSource) Read(p []byte) (int, error) {
	if s.done >= s.n {
		return 0, io.EOF
	}
	if s.stop != nil && s.done >= s.stopAt {
		s.stop()
		s.stop = nil
	}
	k := min(int64(len(p)), s.n-s.done)
	if s.stop != nil {
		k = min(k, s.stopAt-s.done)
	}
	for i := range p[:k] {
		p[i] = byte(s.done + int64(i))
	}
	s.done += k
	return int(k), nil
}

// TestPutServerStopped kills the server in the middle of a multipart Put.
// Put must fail with ErrUnavailable; after the restart, the Store's
// background abort must remove the incomplete upload, and no object may
// appear.
func TestPutServerStopped(t *testing.T) {
	srv := s3test.Start(t)
	if !srv.Managed() {
		t.Skip("the server comes from the environment; cannot stop it")
	}
	cfg := srv.Bucket(t, "outage")
	s := open(t, cfg)
	ctx := context.Background()
	const key = "outage/obj"
	src := &slowSource{n: 64 << 20, stopAt: 20 << 20, stop: srv.Stop}
	start := time.Now()
	_, err := s.Put(ctx, key, src)
	failedAfter := time.Since(start)
	t.Logf("Put with the server killed after 20 MiB failed after %v (read %d MiB): %v", failedAfter.Round(time.Millisecond), src.done>>20, err)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put = %v, want ErrUnavailable", err)
	}
	if failedAfter > 10*time.Second {
		t.Errorf("Put took %v to notice the outage", failedAfter)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Stat while the server is down = %v, want ErrUnavailable", err)
	}

	srv.Start()
	c := client(t, cfg)
	deadline := time.Now().Add(45 * time.Second)
	restarted := time.Now()
	for {
		var uploads []string
		for u := range c.ListIncompleteUploads(ctx, cfg.Bucket, "outage/", true) {
			if u.Err != nil {
				t.Fatalf("ListIncompleteUploads: %v", u.Err)
			}
			uploads = append(uploads, u.Key+" "+u.UploadID)
		}
		if len(uploads) == 0 {
			t.Logf("incomplete upload aborted %v after the restart", time.Since(restarted).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incomplete uploads remain 45s after the restart: %v", uploads)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after the failed Put = %v, want ErrNotFound", err)
	}
	for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: "outage/", Recursive: true, WithVersions: true}) {
		t.Errorf("object left after the failed Put: %+v", o)
	}
	// The store works again.
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("after"))); err != nil {
		t.Fatalf("Put after the restart: %v", err)
	}
}

// TestCloseStopsAbortRetries: with the server down for good, Close returns
// promptly, and Open's sweep removes the upload later.
func TestCloseStopsAbortRetries(t *testing.T) {
	srv := s3test.Start(t)
	if !srv.Managed() {
		t.Skip("the server comes from the environment; cannot stop it")
	}
	cfg := srv.Bucket(t, "closeabort")
	s := open(t, cfg)
	src := &slowSource{n: 32 << 20, stopAt: 10 << 20, stop: srv.Stop}
	if _, err := s.Put(context.Background(), "x/obj", src); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put = %v, want ErrUnavailable", err)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	srv.Start()
	c := client(t, cfg)
	n := 0
	for range c.ListIncompleteUploads(context.Background(), cfg.Bucket, "x/", true) {
		n++
	}
	if n != 1 {
		t.Fatalf("%d incomplete uploads after Close with the server down, want 1 (left for the sweep)", n)
	}
	s2 := open(t, cfg)
	aborted, err := s2.AbortStaleUploads(context.Background(), 0)
	if err != nil || aborted != 1 {
		t.Fatalf("AbortStaleUploads = %d, %v; want 1, nil", aborted, err)
	}
	for u := range c.ListIncompleteUploads(context.Background(), cfg.Bucket, "x/", true) {
		t.Errorf("incomplete upload left after the sweep: %+v", u)
	}
}

// TestVersionedDelete: every version and delete marker of the key goes,
// other keys stay.
func TestVersionedDelete(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "vdelete")
	s := open(t, cfg)
	c := client(t, cfg)
	ctx := context.Background()
	if err := c.EnableVersioning(ctx, cfg.Bucket); err != nil {
		t.Skipf("server does not support versioning: %v", err)
	}
	const key = "v/obj"
	for i := range 2 {
		if _, err := s.Put(ctx, key, strings.NewReader(fmt.Sprint("version ", i))); err != nil {
			t.Fatal(err)
		}
	}
	// A plain DELETE by someone else leaves a delete marker on top.
	if err := c.RemoveObject(ctx, cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, key, strings.NewReader("version 3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "v/obj2", strings.NewReader("neighbour")); err != nil {
		t.Fatal(err)
	}
	versions := func(k string) (n, markers int) {
		for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: k, Recursive: true, WithVersions: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if o.Key == k {
				n++
				if o.IsDeleteMarker {
					markers++
				}
			}
		}
		return n, markers
	}
	n, markers := versions(key)
	t.Logf("before Delete: %d versions of %s, %d of them delete markers", n, key, markers)
	if n != 4 || markers != 1 {
		t.Fatalf("setup: %d versions (%d markers), want 4 (1)", n, markers)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n, _ := versions(key); n != 0 {
		t.Errorf("%d versions of %s remain after Delete", n, key)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if n, _ := versions("v/obj2"); n != 1 {
		t.Errorf("neighbour has %d versions after Delete, want 1", n)
	}
	// Open's probe leaves no version behind either.
	for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: ".sealgate-probe/", Recursive: true, WithVersions: true}) {
		t.Errorf("probe left %+v", o)
	}
}

// TestOpenLockedBucketWithDefaultRetention: a bucket whose default
// retention would lock any object. Open must not leave undeletable probe
// objects there.
func TestOpenLockedBucketWithDefaultRetention(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "defaultlock")
	cfg.ObjectLock = s3.ObjectLock{Enabled: true}
	open(t, cfg)
	c := client(t, cfg)
	ctx := context.Background()
	mode, validity, unit := minio.Governance, uint(1), minio.Days
	if err := c.SetObjectLockConfig(ctx, cfg.Bucket, &mode, &validity, &unit); err != nil {
		t.Skipf("server does not support default retention: %v", err)
	}
	s := open(t, cfg)
	for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: ".sealgate-probe/", Recursive: true, WithVersions: true}) {
		t.Errorf("probe left %+v", o)
	}
	if _, err := s.PutLocked(ctx, "cp/1", strings.NewReader("checkpoint"), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("PutLocked: %v", err)
	}
}

func TestPutLocked(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "locked")
	cfg.ObjectLock = s3.ObjectLock{Enabled: true, Mode: s3.Governance}
	cfg.PartSize = s3.MinPartSize
	s := open(t, cfg)
	ctx := context.Background()
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, size := range []int{100, 11 << 20} {
		key := fmt.Sprintf("checkpoints/%d", size)
		data := bytes.Repeat([]byte("checkpoint "), size/11+1)[:size]
		info, err := s.PutLocked(ctx, key, bytes.NewReader(data), until)
		if err != nil {
			t.Fatalf("PutLocked(%d bytes): %v", size, err)
		}
		if info.Size != int64(size) {
			t.Errorf("PutLocked size = %d, want %d", info.Size, size)
		}
		rc, _, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("locked object read back differs")
		}
		// Read the retention from HEAD's headers: versitygw v1.8.0 answers
		// GetObjectRetention with an <ObjectLockRetention> root element,
		// which minio-go's GetObjectRetention (api-object-retention.go)
		// refuses to parse ("expected element type <Retention>").
		oi, err := client(t, cfg).StatObject(ctx, cfg.Bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mode, retain := oi.Metadata.Get("X-Amz-Object-Lock-Mode"), oi.Metadata.Get("X-Amz-Object-Lock-Retain-Until-Date")
		t.Logf("%s: lock mode %q, retain until %q", key, mode, retain)
		if mode != string(s3.Governance) {
			t.Errorf("lock mode = %q, want %s", mode, s3.Governance)
		}
		if r, err := time.Parse(time.RFC3339, retain); err != nil || !r.Equal(until) {
			t.Errorf("retain until = %q, want %v", retain, until.UTC())
		}
		// Delete must fail: retention protects every version.
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete of a locked object succeeded")
		} else {
			t.Logf("Delete of a locked object: %v", err)
		}
		if _, err := s.Stat(ctx, key); err != nil {
			t.Errorf("locked object gone after a refused Delete: %v", err)
		}
	}
	if _, err := s.PutLocked(ctx, "checkpoints/past", strings.NewReader("x"), time.Now().Add(-time.Minute)); err == nil {
		t.Error("PutLocked with a past date succeeded")
	}
}

func TestPutLockedNeedsConfig(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "nolock")
	s := open(t, cfg)
	_, err := s.PutLocked(context.Background(), "cp", strings.NewReader("x"), time.Now().Add(time.Hour))
	if err == nil || !strings.Contains(err.Error(), "Object Lock") {
		t.Errorf("PutLocked without Object Lock = %v, want an error naming Object Lock", err)
	}
	// The bucket exists without Object Lock: asking for it must fail at Open.
	cfg.ObjectLock.Enabled = true
	_, err = s3.Open(context.Background(), cfg)
	t.Logf("Open with Object Lock on an unlocked bucket: %v", err)
	if err == nil || !strings.Contains(err.Error(), "Object Lock") {
		t.Errorf("Open = %v, want an error naming Object Lock", err)
	}
}

func TestAbortStaleUploads(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "stale")
	s := open(t, cfg)
	ctx := context.Background()
	core := minio.Core{Client: client(t, cfg)}
	if _, err := core.NewMultipartUpload(ctx, cfg.Bucket, "crashed/obj", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.AbortStaleUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("AbortStaleUploads(1h) = %d, %v; want 0 (the upload is fresh)", n, err)
	}
	if n, err := s.AbortStaleUploads(ctx, 0); err != nil || n != 1 {
		t.Fatalf("AbortStaleUploads(0) = %d, %v; want 1", n, err)
	}
}

// zeroSource yields n zero bytes without holding them.
type zeroSource struct{ n int64 }

func (z *zeroSource) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// TestPutMemoryBounded streams 64 MiB and checks that the heap grows by
// about one part, not by the object or by minio-go's default ~537 MiB part.
func TestPutMemoryBounded(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "memory")
	s := open(t, cfg)
	const size = 64 << 20
	var err error
	peak, alloc := s3test.MeasurePeakHeap(func() {
		_, err = s.Put(context.Background(), "mem/obj", &zeroSource{n: size})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Put of %d MiB with %d MiB parts: peak heap growth %.1f MiB, allocated %.1f MiB",
		size>>20, s3.DefaultPartSize>>20, float64(peak)/(1<<20), float64(alloc)/(1<<20))
	if limit := uint64(s3.DefaultPartSize + 8<<20); peak > limit {
		t.Errorf("peak heap growth %d bytes exceeds %d", peak, limit)
	}
}

// BenchmarkPutStreaming512MiB measures one streaming Put of 512 MiB and
// reports the peak heap growth and allocation per upload.
//
//	go test -run '^$' -bench PutStreaming -benchtime 1x ./storage/s3/
func BenchmarkPutStreaming512MiB(b *testing.B) {
	srv := s3test.Start(b)
	cfg := srv.Bucket(b, "bench")
	s := open(b, cfg)
	const size = 512 << 20
	b.SetBytes(size)
	var peakMax, allocSum uint64
	for i := 0; b.Loop(); i++ {
		var err error
		peak, alloc := s3test.MeasurePeakHeap(func() {
			_, err = s.Put(context.Background(), fmt.Sprintf("bench/%d", i), &zeroSource{n: size})
		})
		if err != nil {
			b.Fatal(err)
		}
		peakMax = max(peakMax, peak)
		allocSum += alloc
	}
	b.ReportMetric(float64(peakMax)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(allocSum)/float64(b.N)/(1<<20), "alloc-MiB/op")
}

// BenchmarkMinioDefaultPut512MiB is the comparison behind the package
// documentation: minio-go's PutObject with size -1 and no PartSize.
func BenchmarkMinioDefaultPut512MiB(b *testing.B) {
	srv := s3test.Start(b)
	cfg := srv.Bucket(b, "benchdefault")
	open(b, cfg)
	c := client(b, cfg)
	const size = 512 << 20
	b.SetBytes(size)
	var peakMax uint64
	for i := 0; b.Loop(); i++ {
		var err error
		peak, _ := s3test.MeasurePeakHeap(func() {
			_, err = c.PutObject(context.Background(), cfg.Bucket, fmt.Sprintf("bench/%d", i), &zeroSource{n: size}, -1, minio.PutObjectOptions{})
		})
		if err != nil {
			b.Fatal(err)
		}
		peakMax = max(peakMax, peak)
	}
	b.ReportMetric(float64(peakMax)/(1<<20), "peak-heap-MiB")
}

// TestVersionedDeleteMany: DeleteMany removes every version and delete
// marker of each key in a few requests, leaves neighbours alone, and
// accepts keys that are not there.
func TestVersionedDeleteMany(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "vdeletemany")
	s := open(t, cfg)
	c := client(t, cfg)
	ctx := context.Background()
	if err := c.EnableVersioning(ctx, cfg.Bucket); err != nil {
		t.Skipf("server does not support versioning: %v", err)
	}
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("objects/t%03d/0.age", i)
		keys = append(keys, k)
		if _, err := s.Put(ctx, k, strings.NewReader("v1")); err != nil {
			t.Fatal(err)
		}
	}
	// Extra versions and a delete marker on some keys.
	if _, err := s.Put(ctx, keys[3], strings.NewReader("v2")); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveObject(ctx, cfg.Bucket, keys[5], minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "objects/t999/0.age", strings.NewReader("neighbour")); err != nil {
		t.Fatal(err)
	}
	failed := s.DeleteMany(ctx, append(keys, "objects/missing/0.age"))
	if len(failed) != 0 {
		t.Fatalf("DeleteMany failed for %v", failed)
	}
	left := 0
	for o := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: "objects/", Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.Key != "objects/t999/0.age" {
			t.Errorf("left behind: %s version %s (delete marker %v)", o.Key, o.VersionID, o.IsDeleteMarker)
		}
		left++
	}
	if left != 1 {
		t.Fatalf("%d versions under objects/, want only the neighbour's", left)
	}
	if failed := s.DeleteMany(ctx, keys); len(failed) != 0 {
		t.Fatalf("deleting again: %v", failed)
	}
	if failed := s.DeleteMany(ctx, []string{"../bad"}); failed["../bad"] == nil {
		t.Fatal("an invalid key was accepted")
	}
}

// TestVersionedProveAbsent: ProveAbsent reports a key present while any
// version of it remains, a delete marker alone included (Stat says "not
// found" then), and absent once every version is gone; neighbours under
// the same prefix do not count.
func TestVersionedProveAbsent(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "vproveabsent")
	s := open(t, cfg)
	c := client(t, cfg)
	ctx := context.Background()
	if err := c.EnableVersioning(ctx, cfg.Bucket); err != nil {
		t.Skipf("server does not support versioning: %v", err)
	}
	keys := []string{"sealed/ta/0.age", "sealed/tb/0.age", "sealed/tc/0.age", "sealed/td/0.age"}
	for _, k := range append(keys[:3:3], "sealed/neighbour/0.age") {
		if _, err := s.Put(ctx, k, strings.NewReader("v1")); err != nil {
			t.Fatal(err)
		}
	}
	// ta: live. tb: only a delete marker and the old version. tc: deleted
	// (every version). td: never there.
	if err := c.RemoveObject(ctx, cfg.Bucket, keys[1], minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, keys[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, keys[1]); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat of a key with a delete marker: %v, want not found", err)
	}
	present, err := s.ProveAbsent(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{keys[0]: true, keys[1]: true}
	if !maps.Equal(present, want) {
		t.Fatalf("present = %v, want %v", present, want)
	}
	if failed := s.DeleteMany(ctx, keys); len(failed) != 0 {
		t.Fatal(failed)
	}
	if present, err = s.ProveAbsent(ctx, keys); err != nil || len(present) != 0 {
		t.Fatalf("after deleting: present = %v, %v", present, err)
	}
	if _, err := s.ProveAbsent(ctx, []string{"../bad"}); err == nil {
		t.Fatal("an invalid key was accepted")
	}
}
