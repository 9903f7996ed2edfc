// Package s3 is the S3 implementation of storage.Store, on minio-go v7. It
// works with AWS S3 and S3-compatible servers (MinIO, Ceph RGW, SeaweedFS,
// versitygw …).
//
// # Start-up
//
// Open connects, creates the bucket if it is missing and then probes the
// permissions the store needs — put, stat, get, list versions, delete, and
// create and abort a multipart upload — on a throw-away object under
// ".sealgate-probe/". A wrong key, a missing permission or an unreachable
// server is therefore reported at start, naming the endpoint and the bucket,
// not at the first mail. (In an Object Lock bucket with a default retention
// rule the probe writes no object, since it could not delete it.)
//
// # Streaming uploads and memory
//
// Put does not know the object's length. It fills one buffer of PartSize
// bytes (default 8 MiB) from the reader; if the reader ends first, the
// object goes as a single PUT, otherwise as a multipart upload, one part at
// a time, from the same buffer; parts are not uploaded concurrently. Peak
// memory per Put is therefore PartSize plus about 1 MiB (the request,
// transport buffers, and minio-go's 64 KiB chunk buffer for streaming
// signatures on plain HTTP). Measured with BenchmarkPutStreaming512MiB
// against versitygw over plain HTTP: 9.7 MiB peak heap growth for a 512 MiB
// Put with 8 MiB parts (8.6 MiB for 64 MiB, TestPutMemoryBounded), against
// 558 MiB for minio-go's PutObject with size -1 and no PartSize
// (BenchmarkMinioDefaultPut512MiB). Buffers are pooled per Store. The limit
// on object size is 10,000 parts × PartSize (78 GiB at 8 MiB).
//
// minio-go's own PutObject with size -1 is not used: without an explicit
// PartSize it allocates a part buffer of ~537 MiB (5 TiB / 10,000 parts,
// see optimalPartInfo in api-put-object-common.go of v7.4.1), and with
// ConcurrentStreamParts it holds NumThreads of them. Even with a PartSize,
// putObjectMultipartStreamNoLength (api-put-object.go) always goes
// multipart, also for an empty object, and on failure it calls
// abortFailedUpload (api-remove.go), which discards the abort's error: when
// the server is unreachable the upload, and its parts, stay behind unnoticed.
// Using minio.Core (NewMultipartUpload, PutObjectPart,
// CompleteMultipartUpload, AbortMultipartUpload) gives exact control of
// memory, of the single-PUT shortcut and of the abort.
//
// # Failed uploads
//
// When a Put fails (reader error, cancelled context, server error) after a
// multipart upload was created, Put aborts it before returning. If the abort
// itself fails — typically because the server is down — the Store keeps
// retrying it in the background, with backoff, until it succeeds or Close
// is called. Uploads that nobody could abort (the process died) are swept
// by Open: every incomplete upload initiated more than StaleUploadAge ago
// is aborted. A bucket lifecycle rule "AbortIncompleteMultipartUpload" is a
// good extra safety net on AWS.
//
// There is one narrow window the store cannot close: if the server commits
// CompleteMultipartUpload but the response is lost, Put returns an error
// while the object exists. A retried Put replaces it; an orphan collector
// using List removes it otherwise.
//
// # Errors
//
// Network errors, timeouts, 5xx responses, SlowDown and the like wrap
// storage.ErrUnavailable. NoSuchKey (and NoSuchBucket on reads) wrap
// storage.ErrNotFound. AccessDenied, InvalidAccessKeyId and
// SignatureDoesNotMatch wrap ErrAccessDenied, which is permanent. Each
// request is tried at most Config.MaxRetries times (default 3) so that an
// outage is reported in about a second, not after minio-go's default ten
// attempts.
//
// # Versions and Object Lock
//
// Delete removes every version of the key (including delete markers) when
// the bucket keeps versions, then lists versions and stats the key again to
// prove it is gone. PutLocked (storage.Retainer) writes an object under S3
// Object Lock retention; it is used for signed ledger checkpoints, in a
// bucket of their own created with Object Lock.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sealgate/sealgate/storage"
)

// Defaults for Config fields left zero.
const (
	DefaultPartSize       = 8 << 20
	DefaultMaxRetries     = 3
	DefaultDialTimeout    = 5 * time.Second
	DefaultStaleUploadAge = 24 * time.Hour
	// MinPartSize is S3's minimum size of every part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize bounds PartSize; it is also S3's maximum part size.
	MaxPartSize = 5 << 30
	// maxParts is S3's limit on the number of parts of one upload.
	maxParts = 10000
	// openTimeout bounds Open when its context has no deadline.
	openTimeout = 30 * time.Second
	// abortTimeout bounds one attempt to abort a multipart upload.
	abortTimeout = 10 * time.Second
	// probePrefix holds the objects written by the start-up probe.
	probePrefix = ".sealgate-probe/"
)

// LockMode is an S3 Object Lock retention mode.
type LockMode string

const (
	// Governance retention can be lifted by a user holding
	// s3:BypassGovernanceRetention.
	Governance LockMode = "GOVERNANCE"
	// Compliance retention cannot be lifted by anyone, the account's root
	// user included, until it expires.
	Compliance LockMode = "COMPLIANCE"
)

// ObjectLock configures S3 Object Lock for ledger checkpoints.
type ObjectLock struct {
	// Enabled makes Open create the bucket with Object Lock when it creates
	// it, and check that an existing bucket has Object Lock enabled (S3 can
	// enable it only at creation on many servers). PutLocked refuses to
	// work unless it is set.
	Enabled bool
	// Mode is the retention mode PutLocked sets. Default Governance.
	Mode LockMode
}

// Config configures a Store.
type Config struct {
	// Endpoint is "host:port", or a URL "http://host:port" or
	// "https://host:port" whose scheme then decides TLS.
	Endpoint string
	// Region, if empty, is discovered from the bucket (one extra request
	// per bucket, cached); MakeBucket then uses "us-east-1".
	Region    string
	Bucket    string
	AccessKey string
	SecretKey string
	// Insecure selects plain HTTP instead of HTTPS.
	Insecure bool
	// PathStyle forces path-style requests (http://host/bucket/key), which
	// most self-hosted servers need; otherwise minio-go chooses
	// (virtual-host style for AWS).
	PathStyle bool
	// PartSize is the size of each multipart part and of the one buffer a
	// Put holds; between MinPartSize and MaxPartSize. Default 8 MiB.
	PartSize int64
	// ObjectLock configures PutLocked.
	ObjectLock ObjectLock
	// MaxRetries is the number of attempts per request. Default 3.
	MaxRetries int
	// DialTimeout bounds connecting to the server. Default 5s.
	DialTimeout time.Duration
	// StaleUploadAge: Open aborts incomplete multipart uploads initiated
	// longer ago than this. Default 24h; negative disables the sweep (then
	// the credentials need no s3:ListBucketMultipartUploads).
	StaleUploadAge time.Duration
	// NoCreate makes Open fail with ErrNoBucket instead of creating a
	// missing bucket (a configuration check changes nothing).
	NoCreate bool
}

// ConfigFromEnv reads a Config from SEALGATE_S3_ENDPOINT,
// SEALGATE_S3_BUCKET, SEALGATE_S3_ACCESS_KEY, SEALGATE_S3_SECRET_KEY,
// SEALGATE_S3_REGION, SEALGATE_S3_INSECURE (true/1/yes: plain HTTP) and
// SEALGATE_S3_PATH_STYLE (true/1/yes). It reports false when
// SEALGATE_S3_ENDPOINT is unset or empty. getenv is usually os.Getenv.
func ConfigFromEnv(getenv func(string) string) (Config, bool) {
	endpoint := strings.TrimSpace(getenv("SEALGATE_S3_ENDPOINT"))
	if endpoint == "" {
		return Config{}, false
	}
	return Config{
		Endpoint:  endpoint,
		Bucket:    getenv("SEALGATE_S3_BUCKET"),
		AccessKey: getenv("SEALGATE_S3_ACCESS_KEY"),
		SecretKey: getenv("SEALGATE_S3_SECRET_KEY"),
		Region:    getenv("SEALGATE_S3_REGION"),
		Insecure:  envBool(getenv("SEALGATE_S3_INSECURE")),
		PathStyle: envBool(getenv("SEALGATE_S3_PATH_STYLE")),
	}, true
}

func envBool(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// ErrAccessDenied marks a permission or credential problem (AccessDenied,
// InvalidAccessKeyId, SignatureDoesNotMatch, …). It is permanent: retrying
// does not help until an operator fixes the credentials or the policy.
var ErrAccessDenied = errors.New("s3: access denied (check the access key, the secret key and the bucket policy)")

// ErrNoBucket: the bucket does not exist and Config.NoCreate forbids
// creating it.
var ErrNoBucket = errors.New("s3: the bucket does not exist")

// Store is a storage.Store in an S3 bucket. It implements storage.Lister,
// storage.RangeGetter and storage.Retainer. It is safe for concurrent use,
// also by several processes sharing the bucket. Call Close when done: it
// stops background retries of failed aborts.
type Store struct {
	cfg      Config
	endpoint string // URL for messages, e.g. "https://s3.example.com"
	client   *minio.Client
	core     minio.Core
	bufs     sync.Pool // *[]byte of cfg.PartSize

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup

	// noVersionList is set once the server answered NotImplemented to a
	// version listing: Delete then removes the current version only.
	noVersionList atomic.Bool
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.Lister           = (*Store)(nil)
	_ storage.RangeGetter      = (*Store)(nil)
	_ storage.Retainer         = (*Store)(nil)
	_ storage.BulkDeleter      = (*Store)(nil)
	_ storage.CoverageReporter = (*Store)(nil)
	_ storage.AbsenceProver    = (*Store)(nil)
)

// Open connects to the server, creates the bucket if it is missing, checks
// Object Lock when cfg asks for it, probes the permissions the store needs
// and sweeps stale multipart uploads. If ctx has no deadline, Open gives up
// after 30 seconds. The caller must Close the Store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := newStore(cfg)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, openTimeout)
		defer cancel()
	}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("failed to open s3 store (endpoint %s, bucket %s): %w", s.endpoint, cfg.Bucket, err)
	}
	return s, nil
}

func newStore(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("failed to open s3 store: endpoint and bucket must be set")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize {
		return nil, fmt.Errorf("failed to open s3 store: part size %d outside [%d, %d]", cfg.PartSize, MinPartSize, MaxPartSize)
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.StaleUploadAge == 0 {
		cfg.StaleUploadAge = DefaultStaleUploadAge
	}
	switch cfg.ObjectLock.Mode {
	case "":
		cfg.ObjectLock.Mode = Governance
	case Governance, Compliance:
	default:
		return nil, fmt.Errorf("failed to open s3 store: unknown object lock mode %q (want %s or %s)", cfg.ObjectLock.Mode, Governance, Compliance)
	}

	host, secure := cfg.Endpoint, !cfg.Insecure
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil {
			return nil, fmt.Errorf("failed to parse s3 endpoint: %w", err)
		}
		switch u.Scheme {
		case "http":
			secure = false
		case "https":
			if cfg.Insecure {
				return nil, fmt.Errorf("failed to open s3 store: endpoint %s is https but plain HTTP (insecure) is configured", cfg.Endpoint)
			}
			secure = true
		default:
			return nil, fmt.Errorf("failed to open s3 store: endpoint %s: scheme must be http or https", cfg.Endpoint)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("failed to open s3 store: endpoint %s must not have a path", cfg.Endpoint)
		}
		host = u.Host
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}

	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Time allowed between sending the last byte of a request and the
		// response headers: a server may take a while to commit a part or
		// to complete a large multipart upload.
		ResponseHeaderTimeout: 2 * time.Minute,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        64 << 10,
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    transport,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create s3 client for %s: %w", cfg.Endpoint, err)
	}
	s := &Store{
		cfg:      cfg,
		endpoint: scheme + "://" + host,
		client:   client,
		core:     minio.Core{Client: client},
		closing:  make(chan struct{}),
	}
	partSize := cfg.PartSize
	s.bufs.New = func() any {
		b := make([]byte, partSize)
		return &b
	}
	return s, nil
}

// start runs Open's checks in order; each error names the step.
func (s *Store) start(ctx context.Context) error {
	exists, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("failed to check bucket: %w", classify(err))
	}
	if !exists && s.cfg.NoCreate {
		return fmt.Errorf("%w: %s", ErrNoBucket, s.cfg.Bucket)
	}
	if !exists {
		err := s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{
			Region:        s.cfg.Region,
			ObjectLocking: s.cfg.ObjectLock.Enabled,
		})
		switch code(err) {
		case "", "BucketAlreadyOwnedByYou":
		case "NotImplemented":
			return fmt.Errorf("failed to create bucket with Object Lock: the server does not support Object Lock: %w", err)
		default:
			return fmt.Errorf("failed to create bucket: %w", classify(err))
		}
	}
	defaultRetention := false
	if s.cfg.ObjectLock.Enabled {
		enabled, mode, _, _, err := s.client.GetObjectLockConfig(ctx, s.cfg.Bucket)
		switch code(err) {
		case "":
			if enabled != "Enabled" {
				return fmt.Errorf("failed to check Object Lock: the bucket reports status %q, want Enabled", enabled)
			}
			defaultRetention = mode != nil && *mode != ""
		case "ObjectLockConfigurationNotFoundError", "InvalidRequest":
			return fmt.Errorf("failed to check Object Lock: the bucket exists without Object Lock, which most servers can enable only when a bucket is created; use a new bucket: %w", err)
		case "NotImplemented", "MethodNotAllowed":
			return fmt.Errorf("failed to check Object Lock: the server does not support Object Lock: %w", err)
		default:
			return fmt.Errorf("failed to check Object Lock: %w", classify(err))
		}
	}
	if err := s.probe(ctx, !defaultRetention); err != nil {
		return err
	}
	if s.cfg.StaleUploadAge > 0 {
		if _, err := s.AbortStaleUploads(ctx, s.cfg.StaleUploadAge); err != nil {
			return err
		}
	}
	return nil
}

// probe exercises every permission the store needs on a throw-away key.
// Without writeObject (a bucket whose default retention would lock the
// probe object for good) it checks reads on a missing key and the
// multipart permissions only.
func (s *Store) probe(ctx context.Context, writeObject bool) error {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("failed to generate probe key: %w", err)
	}
	key := probePrefix + hex.EncodeToString(rnd[:])
	if writeObject {
		if err := s.probeObject(ctx, key); err != nil {
			return err
		}
	} else if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("failed to probe stat: %w", err)
	}
	uploadID, err := s.core.NewMultipartUpload(ctx, s.cfg.Bucket, key, minio.PutObjectOptions{})
	if err != nil {
		return fmt.Errorf("failed to probe multipart upload: %w", classify(err))
	}
	if err := s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, key, uploadID); err != nil {
		return fmt.Errorf("failed to probe abort of a multipart upload: %w", classify(err))
	}
	return nil
}

// probeObject puts, stats, gets and deletes a small object under key.
func (s *Store) probeObject(ctx context.Context, key string) error {
	payload := []byte("sealgate storage probe " + key + "\n")

	if _, err := s.Put(ctx, key, bytes.NewReader(payload)); err != nil {
		return fmt.Errorf("failed to probe put: %w", err)
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		_ = s.Delete(context.WithoutCancel(ctx), key)
		return fmt.Errorf("failed to probe stat: %w", err)
	}
	if info.Size != int64(len(payload)) {
		_ = s.Delete(context.WithoutCancel(ctx), key)
		return fmt.Errorf("failed to probe stat: size %d, want %d", info.Size, len(payload))
	}
	rc, _, err := s.Get(ctx, key)
	if err == nil {
		var got []byte
		got, err = io.ReadAll(rc)
		rc.Close()
		if err == nil && !bytes.Equal(got, payload) {
			err = errors.New("the object read back differs from the one written")
		}
	}
	if err != nil {
		_ = s.Delete(context.WithoutCancel(ctx), key)
		return fmt.Errorf("failed to probe get: %w", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("failed to probe delete: %w", err)
	}
	return nil
}

// Close stops the background retries of failed aborts and waits for them
// to return. Uploads still not aborted are swept by a later Open. Close
// does not interrupt calls in progress; the Store must not be used after.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Put implements storage.Store. Peak memory is one PartSize buffer; see the
// package documentation.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	return s.put(ctx, key, r, minio.PutObjectOptions{}, false)
}

// PutLocked implements storage.Retainer: Put with S3 Object Lock retention
// in the configured mode until retainUntil. It requires
// Config.ObjectLock.Enabled (and so a bucket with Object Lock, which Open
// checked). Every request carries Content-MD5, which S3 requires for
// uploads with retention settings.
func (s *Store) PutLocked(ctx context.Context, key string, r io.Reader, retainUntil time.Time) (storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Info{}, err
	}
	if !s.cfg.ObjectLock.Enabled {
		return storage.Info{}, fmt.Errorf("failed to put %s with retention: Object Lock is not enabled in the configuration of bucket %s", key, s.cfg.Bucket)
	}
	if !retainUntil.After(time.Now()) {
		return storage.Info{}, fmt.Errorf("failed to put %s with retention: retain-until date %v is not in the future", key, retainUntil)
	}
	opts := minio.PutObjectOptions{
		Mode:            minio.RetentionMode(s.cfg.ObjectLock.Mode),
		RetainUntilDate: retainUntil.UTC(),
	}
	info, err := s.put(ctx, key, r, opts, true)
	if c := code(err); c == "NotImplemented" || c == "InvalidRequest" {
		return storage.Info{}, fmt.Errorf("%w (the server at %s may not support Object Lock)", err, s.endpoint)
	}
	return info, err
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, opts minio.PutObjectOptions, sendMD5 bool) (storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, s.fail("put", key, err)
	}
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp
	cr := &ctxReader{ctx: ctx, r: r}

	n, eof, err := fill(cr, buf)
	if err != nil {
		return storage.Info{}, fmt.Errorf("failed to read data for %s: %w", key, err)
	}
	if eof {
		// The whole object fits in one part: a single PUT, no multipart.
		data := buf[:n]
		md5b64 := ""
		if sendMD5 {
			md5b64 = md5Base64(data)
		}
		_, err := s.core.PutObject(ctx, s.cfg.Bucket, key, bytes.NewReader(data), int64(n), md5b64, "", opts)
		if err != nil {
			return storage.Info{}, s.failPut(key, err)
		}
		return storage.Info{Key: key, Size: int64(n), ModTime: time.Now().UTC()}, nil
	}
	return s.putMultipart(ctx, key, cr, buf, opts, sendMD5)
}

func (s *Store) putMultipart(ctx context.Context, key string, cr *ctxReader, buf []byte, opts minio.PutObjectOptions, sendMD5 bool) (info storage.Info, err error) {
	uploadID, err := s.core.NewMultipartUpload(ctx, s.cfg.Bucket, key, opts)
	if err != nil {
		return storage.Info{}, s.failPut(key, err)
	}
	committed := false
	defer func() {
		if !committed {
			s.abort(ctx, key, uploadID)
		}
	}()

	var parts []minio.CompletePart
	var total int64
	data, eof := buf, false // the caller filled buf completely
	for part := 1; ; part++ {
		if part > maxParts {
			return storage.Info{}, fmt.Errorf("failed to put %s: object larger than %d parts of %d bytes", key, maxParts, s.cfg.PartSize)
		}
		var popts minio.PutObjectPartOptions
		if sendMD5 {
			popts.Md5Base64 = md5Base64(data)
		}
		// bytes.Reader is an io.Seeker, so minio-go may retry the part
		// (executeMethod in api.go retries only seekable bodies).
		p, err := s.core.PutObjectPart(ctx, s.cfg.Bucket, key, uploadID, part, bytes.NewReader(data), int64(len(data)), popts)
		if err != nil {
			return storage.Info{}, s.failPut(key, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: part, ETag: p.ETag})
		total += int64(len(data))
		if eof {
			break
		}
		var n int
		n, eof, err = fill(cr, buf)
		if err != nil {
			return storage.Info{}, fmt.Errorf("failed to read data for %s: %w", key, err)
		}
		if n == 0 {
			break // the previous part ended exactly at the end of the stream
		}
		data = buf[:n]
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, s.fail("put", key, err)
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.cfg.Bucket, key, uploadID, parts, opts); err != nil {
		return storage.Info{}, s.failPut(key, err)
	}
	committed = true
	return storage.Info{Key: key, Size: total, ModTime: time.Now().UTC()}, nil
}

// abort aborts a multipart upload after a failed Put. The caller's ctx may
// be cancelled already, so the attempt runs detached with its own timeout.
// If it fails for a reason other than "no such upload", a background
// goroutine keeps trying until it succeeds or the Store is closed.
func (s *Store) abort(ctx context.Context, key, uploadID string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	err := s.core.AbortMultipartUpload(actx, s.cfg.Bucket, key, uploadID)
	cancel()
	if err == nil || code(err) == "NoSuchUpload" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.retryAbort(key, uploadID)
	}()
}

func (s *Store) retryAbort(key, uploadID string) {
	delay := time.Second
	for {
		t := time.NewTimer(delay)
		select {
		case <-s.closing:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
		err := s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, key, uploadID)
		cancel()
		if err == nil || code(err) == "NoSuchUpload" {
			return
		}
		delay = min(2*delay, 15*time.Second)
	}
}

// AbortStaleUploads aborts every incomplete multipart upload in the bucket
// initiated more than olderThan ago, and returns how many it aborted. Open
// calls it with Config.StaleUploadAge; olderThan must exceed the longest
// time a Put may take, because other processes may share the bucket.
func (s *Store) AbortStaleUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for u := range s.client.ListIncompleteUploads(lctx, s.cfg.Bucket, "", true) {
		if u.Err != nil {
			return n, fmt.Errorf("failed to list incomplete uploads: %w", classify(u.Err))
		}
		if u.Initiated.After(cutoff) {
			continue
		}
		err := s.core.AbortMultipartUpload(ctx, s.cfg.Bucket, u.Key, u.UploadID)
		if err != nil && code(err) != "NoSuchUpload" {
			return n, fmt.Errorf("failed to abort stale upload of %s: %w", u.Key, classify(err))
		}
		n++
	}
	return n, nil
}

// Get implements storage.Store. It sends the GET at once (minio.Core's
// GetObject, unlike Client.GetObject, is not lazy), so ErrNotFound is
// reported here. The reader streams the response body and fails if ctx is
// cancelled; its read errors are classified like the other errors.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, storage.Info{}, err
	}
	body, oi, _, err := s.core.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, storage.Info{}, s.fail("get", key, err)
	}
	return &bodyReader{rc: body}, storage.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// GetRange implements storage.RangeGetter with an HTTP Range request.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("failed to get %s: negative range offset %d", key, offset)
	}
	if length == 0 {
		return s.emptyRange(ctx, key, offset)
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err := opts.SetRange(offset, offset+length-1)
		if err != nil {
			return nil, fmt.Errorf("failed to get %s: %w", key, err)
		}
	case offset > 0:
		// minio-go's SetRange(start, 0) means "bytes=start-" only for
		// start > 0 (api-get-options.go); offset 0 needs no range at all.
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, fmt.Errorf("failed to get %s: %w", key, err)
		}
	}
	body, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, key, opts)
	if err != nil {
		if code(err) == "InvalidRange" {
			// S3 answers 416 for a range starting at the end; the contract
			// gives an empty reader for offset == size.
			return s.emptyRange(ctx, key, offset)
		}
		return nil, s.fail("get", key, err)
	}
	return &bodyReader{rc: body}, nil
}

func (s *Store) emptyRange(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset > info.Size {
		return nil, fmt.Errorf("failed to get %s: range offset %d outside object of %d bytes", key, offset, info.Size)
	}
	return io.NopCloser(bytes.NewReader(nil)), nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return storage.Info{}, s.fail("stat", key, err)
	}
	return storage.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete implements storage.Store. It lists the versions of key (an
// unversioned bucket lists one, "null"), removes each one including delete
// markers, and then checks that no version remains and that Stat reports
// ErrNotFound; if anything remains (Object Lock retention, a concurrent
// Put) it returns an error. On a server that cannot list versions it falls
// back to a plain DELETE.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	versions, err := s.versions(ctx, key)
	switch {
	case err == nil:
		for _, v := range versions {
			err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{VersionID: v})
			if err != nil && !errors.Is(classify(err), storage.ErrNotFound) {
				return s.fail("delete version "+v+" of", key, err)
			}
		}
		left, err := s.versions(ctx, key)
		if err != nil {
			return s.fail("list versions of", key, err)
		}
		if len(left) > 0 {
			return fmt.Errorf("failed to delete %s: %d version(s) remain after deleting (Object Lock retention or a concurrent write)", key, len(left))
		}
	case code(err) == "NotImplemented":
		s.noVersionList.Store(true)
		if err := s.client.RemoveObject(ctx, s.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil && !errors.Is(classify(err), storage.ErrNotFound) {
			return s.fail("delete", key, err)
		}
	default:
		if errors.Is(classify(err), storage.ErrNotFound) {
			return nil // no bucket, no object
		}
		return s.fail("list versions of", key, err)
	}
	if _, err := s.Stat(ctx, key); err == nil {
		return fmt.Errorf("failed to delete %s: the object is still there after deleting", key)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("failed to confirm deletion: %w", err)
	}
	return nil
}

// DeleteCoverage implements storage.CoverageReporter: every version, unless
// the server has said it cannot list versions (then only the current one).
func (s *Store) DeleteCoverage() string {
	if s.noVersionList.Load() {
		return storage.VersionsCurrent
	}
	return storage.VersionsAll
}

// DeleteMany implements storage.BulkDeleter. Calls should not run
// concurrently with each other under the same prefix (see
// listVersionsRetry). Deleting key by key costs
// four requests per key, two of them version listings, which some servers
// (versitygw's posix backend) answer in time proportional to the whole
// bucket. DeleteMany instead lists the versions under the keys' common
// prefix once, removes them with multi-object deletes (1,000 per request),
// and lists once more to prove that no version of any key remains. When a
// listing would scan far more versions than the keys have (a small batch
// in a large bucket), or the server cannot list versions, it falls back to
// Delete per key.
func (s *Store) DeleteMany(ctx context.Context, keys []string) map[string]error {
	failed := map[string]error{}
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		if err := storage.CheckKey(k); err != nil {
			failed[k] = err
			continue
		}
		want[k] = true
	}
	if len(want) == 0 {
		return failed
	}
	prefix := commonPrefix(want)
	budget := 20*len(want) + 10000 // versions a listing may scan before per-key deletes are cheaper
	found, err := s.listVersionsRetry(ctx, prefix, want, budget)
	if err != nil {
		if !errors.Is(err, errListBudget) && code(err) != "NotImplemented" && ctx.Err() == nil {
			err = s.fail("list versions under", prefix, err)
			for k := range want {
				failed[k] = err
			}
			return failed
		}
		for k := range want { // fall back: one Delete per key
			if err := s.Delete(ctx, k); err != nil {
				failed[k] = err
			}
		}
		return failed
	}
	// Multi-object deletes of up to 1,000 versions each, a few at a time.
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, bulkDeleteConcurrency)
	for start := 0; start < len(found); start += 1000 {
		batch := found[start:min(start+1000, len(found))]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			objs := make(chan minio.ObjectInfo, len(batch))
			for _, o := range batch {
				objs <- o
			}
			close(objs)
			for e := range s.client.RemoveObjects(ctx, s.cfg.Bucket, objs, minio.RemoveObjectsOptions{}) {
				if e.Err != nil && !errors.Is(classify(e.Err), storage.ErrNotFound) {
					mu.Lock()
					failed[e.ObjectName] = s.fail("delete version "+e.VersionID+" of", e.ObjectName, e.Err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		for k := range want {
			if failed[k] == nil {
				failed[k] = fmt.Errorf("failed to delete %s: %w", k, err)
			}
		}
		return failed
	}
	left, err := s.listVersionsRetry(ctx, prefix, want, -1)
	if err != nil {
		err = s.fail("list versions under", prefix, err)
		for k := range want {
			if failed[k] == nil {
				failed[k] = fmt.Errorf("failed to confirm deletion: %w", err)
			}
		}
		return failed
	}
	for _, o := range left {
		if failed[o.Key] == nil {
			failed[o.Key] = fmt.Errorf("failed to delete %s: version %s remains after deleting (Object Lock retention or a concurrent write)", o.Key, o.VersionID)
		}
	}
	return failed
}

// ProveAbsent implements storage.AbsenceProver: one listing of every
// version (delete markers included) under the keys' common prefix, as
// DeleteMany confirms its deletions. A key with any version left is
// reported present. It fails, so that the caller Stats each key, when the
// listing would scan more than 20 versions per key plus 10,000 (the prefix
// holds much else), or the server cannot list versions.
func (s *Store) ProveAbsent(ctx context.Context, keys []string) (map[string]bool, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		if err := storage.CheckKey(k); err != nil {
			return nil, err
		}
		want[k] = true
	}
	present := map[string]bool{}
	if len(want) == 0 {
		return present, nil
	}
	prefix := commonPrefix(want)
	found, err := s.listVersionsRetry(ctx, prefix, want, 20*len(want)+10000)
	if err != nil {
		return nil, s.fail("list versions under", prefix, err)
	}
	for _, o := range found {
		present[o.Key] = true
	}
	return present, nil
}

var errListBudget = errors.New("s3: listing would scan too many versions")

// bulkDeleteConcurrency is how many multi-object deletes DeleteMany has in
// flight.
const bulkDeleteConcurrency = 4

// listVersionsRetry is listVersions, tried again at once when the server
// fails: a listing that races with deletions under the same prefix (by
// another process) can fail on some servers (versitygw's posix backend
// walks directories that vanish meanwhile).
func (s *Store) listVersionsRetry(ctx context.Context, prefix string, want map[string]bool, budget int) ([]minio.ObjectInfo, error) {
	var err error
	for range 3 {
		var out []minio.ObjectInfo
		out, err = s.listVersions(ctx, prefix, want, budget)
		if err == nil || errors.Is(err, errListBudget) || code(err) == "NotImplemented" || ctx.Err() != nil ||
			!errors.Is(classify(err), storage.ErrUnavailable) {
			return out, err
		}
	}
	return nil, err
}

// listVersions returns the versions (delete markers included) under
// prefix whose keys are in want. With budget >= 0 it gives up with
// errListBudget after scanning that many versions.
func (s *Store) listVersions(ctx context.Context, prefix string, want map[string]bool, budget int) ([]minio.ObjectInfo, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine if we return early
	var out []minio.ObjectInfo
	scanned := 0
	for o := range s.client.ListObjects(lctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		if want[o.Key] {
			out = append(out, minio.ObjectInfo{Key: o.Key, VersionID: o.VersionID})
		}
		if scanned++; budget >= 0 && scanned > budget {
			return nil, errListBudget
		}
	}
	// minio-go ends a listing cancelled between two pages without an
	// error: a listing cut short must not pass for a complete one (the
	// keys it did not reach would be taken for absent).
	if err := lctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// commonPrefix returns the longest common prefix of the keys.
func commonPrefix(keys map[string]bool) string {
	first := true
	var p string
	for k := range keys {
		if first {
			p, first = k, false
			continue
		}
		i := 0
		for i < len(p) && i < len(k) && p[i] == k[i] {
			i++
		}
		p = p[:i]
	}
	return p
}

// versions returns the version IDs (delete markers included) of exactly
// key.
func (s *Store) versions(ctx context.Context, key string) ([]string, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine if we return early
	var ids []string
	for o := range s.client.ListObjects(lctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: key, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		if o.Key == key {
			ids = append(ids, o.VersionID)
		}
	}
	if err := lctx.Err(); err != nil { // a listing cut short (see listVersions)
		return nil, err
	}
	return ids, nil
}

// List implements storage.Lister, in S3 key order. Keys that are not valid
// storage keys (written by other tools) and the start-up probe's keys are
// skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine if fn fails
	for o := range s.client.ListObjects(lctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return s.fail("list", strconv.Quote(prefix), o.Err)
		}
		if !storage.ValidKey(o.Key) || strings.HasPrefix(o.Key, probePrefix) {
			continue
		}
		if err := fn(storage.Info{Key: o.Key, Size: o.Size, ModTime: o.LastModified}); err != nil {
			return fmt.Errorf("failed to list %q: %w", prefix, err)
		}
	}
	return nil
}

// fail wraps err for operation op on key, classified.
func (s *Store) fail(op, key string, err error) error {
	return fmt.Errorf("failed to %s %s in bucket %s at %s: %w", op, key, s.cfg.Bucket, s.endpoint, classify(err))
}

// failPut is fail for writes, where a missing bucket is a configuration
// error rather than "not found".
func (s *Store) failPut(key string, err error) error {
	if code(err) == "NoSuchBucket" {
		return fmt.Errorf("failed to put %s: bucket %s does not exist at %s: %w", key, s.cfg.Bucket, s.endpoint, err)
	}
	return s.fail("put", key, err)
}

// code returns the S3 error code in err, or "".
func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// classify wraps err with storage.ErrNotFound, storage.ErrUnavailable or
// ErrAccessDenied according to what it says, and returns other errors as
// they are. Context cancellation is returned as it is; a deadline is
// transient.
func classify(err error) error {
	if err == nil || errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, ErrAccessDenied) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	unavailable := func() error { return fmt.Errorf("%w: %w", storage.ErrUnavailable, err) }
	if errors.Is(err, context.DeadlineExceeded) {
		return unavailable()
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey", "NoSuchVersion", "NotFound", "NoSuchBucket":
			return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccountProblem",
			"AllAccessDisabled", "InvalidToken", "InvalidSecurity", "ExpiredToken":
			return fmt.Errorf("%w: %w", ErrAccessDenied, err)
		case "SlowDown", "SlowDownRead", "SlowDownWrite", "ServiceUnavailable", "InternalError",
			"RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
			"RequestThrottled", "OperationAborted", "XMinioServerNotInitialized",
			"XMinioStorageFull", "RequestTimeTooSkewed":
			return unavailable()
		}
		if er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests || er.StatusCode == http.StatusRequestTimeout {
			return unavailable()
		}
		return err
	}
	// A certificate the client does not trust is a configuration error.
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) {
		return err
	}
	var netErr net.Error
	var urlErr *url.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &urlErr), errors.As(err, &netErr), errors.As(err, &opErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF):
		// minio-go rewrites an EOF inside *url.Error into the text
		// "Connection closed by foreign host" (do in api.go); it stays a
		// *url.Error and is caught here.
		return unavailable()
	}
	return err
}

// ctxReader stops reading once ctx is done, so that a cancelled Put does
// not drain a long stream first.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// fill reads into buf until it is full or r ends. eof reports that r ended
// (n may then be anything from 0 to len(buf)).
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	n, err = io.ReadFull(r, buf)
	switch err {
	case nil:
		return n, false, nil
	case io.EOF, io.ErrUnexpectedEOF:
		return n, true, nil
	}
	return n, false, err
}

func md5Base64(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// bodyReader classifies read errors of a response body, so that a broken
// download reports storage.ErrUnavailable.
type bodyReader struct{ rc io.ReadCloser }

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("failed to read object: %w", classify(err))
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.rc.Close() }
