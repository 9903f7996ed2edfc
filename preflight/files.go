package preflight

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/sealgate/sealgate/storage/s3"
)

// configFile: a configuration that holds secrets must not be readable by
// every user.
func (r *run) configFile(context.Context) Result {
	const name = "config"
	if r.ConfigFile == "" {
		return skip(name, "設定ファイルなし (既定値と SEALGATE_* 環境変数)", "no configuration file (defaults and SEALGATE_* environment)")
	}
	f := newFinding(name)
	fi, err := os.Stat(r.ConfigFile)
	if err != nil {
		f.fail(fmt.Sprintf("%s を確認できません: %v", r.ConfigFile, err), fmt.Sprintf("cannot stat %s: %v", r.ConfigFile, err))
		return f.result()
	}
	perm := fi.Mode().Perm()
	// Whoever can change the configuration can add a network to the
	// relay's trusted networks or name another smarthost: the file, and
	// the folder it is in (the file can be replaced), are not every
	// user's to write.
	if perm&0o002 != 0 {
		f.fail(fmt.Sprintf("%s (mode %04o) は全ユーザーが書き込めます (中継を許すネットワークやスマートホストを書き換えられます): chmod 640 %s", r.ConfigFile, perm, r.ConfigFile),
			fmt.Sprintf("%s (mode %04o) is writable by every user, who could change the relay's trusted networks or the smarthost: chmod 640 %s", r.ConfigFile, perm, r.ConfigFile))
		return f.result()
	}
	dir := filepath.Dir(r.ConfigFile)
	if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
		f.fail(fmt.Sprintf("設定ファイルのフォルダ %s (mode %04o) は全ユーザーが書き込めます (設定ファイルを差し替えられます): chmod 755 %s", dir, di.Mode().Perm(), dir),
			fmt.Sprintf("the configuration's folder %s (mode %04o) is writable by every user, who could replace the configuration: chmod 755 %s", dir, di.Mode().Perm(), dir))
		return f.result()
	}
	secrets := r.c.Storage.S3.SecretKey != "" || r.c.Delivery.SmarthostPass != ""
	if perm&0o004 != 0 && secrets {
		f.warn(fmt.Sprintf("%s (mode %04o) は全ユーザーが読めますが、秘密 (S3 シークレットキーまたはスマートホストのパスワード) が設定されています: chmod 640 にし、グループをサービスのユーザーにしてください", r.ConfigFile, perm),
			fmt.Sprintf("%s (mode %04o) is readable by every user and secrets are configured (S3 secret key or smarthost password): chmod 640 it, group of the service user", r.ConfigFile, perm))
		return f.result()
	}
	f.ok(fmt.Sprintf("%s (mode %04o)", r.ConfigFile, perm), fmt.Sprintf("%s (mode %04o)", r.ConfigFile, perm))
	return f.result()
}

// timezone: the zone of times shown to people loads.
func (r *run) timezone(context.Context) Result {
	f := newFinding("timezone")
	if _, err := time.LoadLocation(r.c.Timezone); err != nil {
		f.fail(fmt.Sprintf("タイムゾーン %q を読み込めません: IANA の名前 (例 Asia/Tokyo) を指定してください", r.c.Timezone),
			fmt.Sprintf("time zone %q does not load: use an IANA name such as Asia/Tokyo", r.c.Timezone))
	} else {
		f.ok(r.c.Timezone, r.c.Timezone)
	}
	return f.result()
}

// dataDir: the data directory is the running user's, closed to others,
// writable, with free space.
func (r *run) dataDir(context.Context) Result {
	f := newFinding("datadir")
	if r.checkDir(f, r.c.DataDir) {
		need := uint64(MinFreeSpace)
		if m := 4 * uint64(r.c.SMTP.MaxMessageSize); m > need {
			need = m
		}
		if free, ok := freeSpace(r.c.DataDir); ok && free < need {
			f.warn(fmt.Sprintf("空き容量 %s (%s 未満): スプールと封緘済みファイルが書けなくなると 4xx で受信を断ります", sizeText(free), sizeText(need)),
				fmt.Sprintf("%s free, less than %s: once the spool and sealed files cannot be written, mail is refused with 4xx", sizeText(free), sizeText(need)))
		}
	}
	return f.result()
}

// checkDir checks a directory the gateway writes into; it reports whether
// the directory exists.
func (r *run) checkDir(f *finding, dir string) bool {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		parent := existingParent(dir)
		if probe, err := os.MkdirTemp(parent, ".sealgate-check-*"); err == nil {
			os.Remove(probe)
			f.ok(fmt.Sprintf("%s はまだありません。serve が作成します (mode 0700)", dir),
				fmt.Sprintf("%s does not exist yet: serve creates it (mode 0700)", dir))
		} else {
			f.fail(fmt.Sprintf("%s を作成できません: %s に書き込めません (uid %d): %v", dir, parent, r.UID, err),
				fmt.Sprintf("%s cannot be created: %s is not writable for uid %d: %v", dir, parent, r.UID, err))
		}
		return false
	}
	if err != nil {
		f.fail(fmt.Sprintf("%s を確認できません: %v", dir, err), fmt.Sprintf("cannot stat %s: %v", dir, err))
		return false
	}
	if !fi.IsDir() {
		f.fail(fmt.Sprintf("%s はディレクトリではありません", dir), fmt.Sprintf("%s is not a directory", dir))
		return false
	}
	if owner, ok := fileOwner(fi); ok && owner != r.UID {
		f.fail(fmt.Sprintf("%s の所有者は uid %d で、実行ユーザー (uid %d) ではありません: サービスのユーザーに chown -R するか、所有者として実行してください", dir, owner, r.UID),
			fmt.Sprintf("%s is owned by uid %d, not by the running user (uid %d): chown -R it to the service user, or run as its owner", dir, owner, r.UID))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		f.warn(fmt.Sprintf("%s (mode %04o) は他のユーザーにも開いています: chmod 700 にしてください", dir, perm),
			fmt.Sprintf("%s (mode %04o) is open to other users: chmod 700 it", dir, perm))
	}
	probe, err := os.CreateTemp(dir, ".sealgate-check-*")
	if err != nil {
		f.fail(fmt.Sprintf("%s に書き込めません: %v (読み取り専用のファイルシステム、または systemd の ReadWritePaths にない)", dir, err),
			fmt.Sprintf("%s is not writable: %v (a read-only file system, or not in the systemd unit's ReadWritePaths)", dir, err))
		return true
	}
	probe.Close()
	os.Remove(probe.Name())
	if f.level <= OK {
		f.ok(fmt.Sprintf("%s: 書き込み可", dir), fmt.Sprintf("%s: writable", dir))
	}
	return true
}

// existingParent returns the nearest ancestor of path that exists.
func existingParent(path string) string {
	p := filepath.Clean(path)
	for {
		parent := filepath.Dir(p)
		if _, err := os.Stat(parent); err == nil || parent == p {
			return parent
		}
		p = parent
	}
}

// storage: the fs store's folder like the data directory; the S3 store
// writes, reads and deletes a probe object.
func (r *run) storage(ctx context.Context) Result {
	f := newFinding("storage")
	s := r.c.Storage
	if s.Type != "s3" {
		r.checkDir(f, s.Dir)
		return f.result()
	}
	if u, err := url.Parse(s.S3.Endpoint); (s.S3.Insecure || (err == nil && u.Scheme == "http")) && !loopbackHost(s3Host(s.S3.Endpoint)) {
		f.warn(fmt.Sprintf("S3 エンドポイント %s は平文の HTTP です (中身は暗号文ですが、メタデータが見えます): https にしてください", s.S3.Endpoint),
			fmt.Sprintf("the S3 endpoint %s is plain HTTP (objects are ciphertext, but their names and sizes show): use https", s.S3.Endpoint))
	}
	buckets := s.S3.Bucket
	if s.S3.LedgerBucket != "" {
		buckets += ", " + s.S3.LedgerBucket
	}
	err := r.ProbeS3(ctx)
	switch {
	case err == nil:
		f.ok(fmt.Sprintf("S3 %s のバケット %s: 試験オブジェクトの書き込み・読み出し・削除に成功", s.S3.Endpoint, buckets),
			fmt.Sprintf("S3 %s, bucket %s: wrote, read and deleted a probe object", s.S3.Endpoint, buckets))
	case errors.Is(err, s3.ErrNoBucket):
		f.warn(fmt.Sprintf("バケットがありません (%v): serve が起動時に作成します (s3:CreateBucket が必要)。書き込みは確認していません", err),
			fmt.Sprintf("a bucket does not exist (%v): serve creates it at start (needs s3:CreateBucket); writing was not probed", err))
	default:
		f.fail(fmt.Sprintf("S3 ストレージを使えません: %v", err), fmt.Sprintf("the S3 store cannot be used: %v", err))
	}
	return f.result()
}

// s3Host returns the host of an S3 endpoint ("host:port" or a URL).
func s3Host(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Hostname()
	}
	if u, err := url.Parse("//" + endpoint); err == nil {
		return u.Hostname()
	}
	return endpoint
}

// masterKey: present (or not yet created), 0600, the running user's.
func (r *run) masterKey(context.Context) Result {
	f := newFinding("keys.master")
	if r.MasterKeyInEnv {
		f.ok("SEALGATE_MASTER_KEY で指定 (鍵ファイルなし。この場でのローテーション不可)",
			"given in SEALGATE_MASTER_KEY: no key file; it cannot be rotated in place")
		return f.result()
	}
	r.keyFile(f, r.c.MasterKeyFile, true)
	if _, err := os.Lstat(r.c.MasterKeyFile + ".next"); err == nil {
		// A rotation is under way: the next key is a master key too.
		r.keyFile(f, r.c.MasterKeyFile+".next", false)
	}
	return f.result()
}

// ledgerKey: the ledger signing key file, like the master key.
func (r *run) ledgerKey(context.Context) Result {
	f := newFinding("keys.ledger")
	r.keyFile(f, r.c.Path("keys", "ledger.key.age"), true)
	return f.result()
}

// keyFile checks one secret key file; missing may be fine on a fresh
// installation (serve creates it).
func (r *run) keyFile(f *finding, path string, mayBeNew bool) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) && mayBeNew {
		if _, err := os.Stat(r.c.Path("sealgate.db")); err == nil {
			f.warn(fmt.Sprintf("%s がありませんが、データベースはあります: 以前に動いていたなら、バックアップから戻してください (serve は新しい鍵を作ります)", path),
				fmt.Sprintf("%s is missing but the database exists: if this installation ran before, restore the key from your backup (serve would make a new one)", path))
			return
		}
		f.ok(fmt.Sprintf("%s はまだありません: 初回の serve (または sealgate init) が mode 0600 で作ります。作られたらバックアップしてください", path),
			fmt.Sprintf("%s does not exist yet: the first serve (or sealgate init) creates it with mode 0600; back it up then", path))
		return
	}
	if err != nil {
		f.fail(fmt.Sprintf("%s を確認できません: %v", path, err), fmt.Sprintf("cannot stat %s: %v", path, err))
		return
	}
	if !fi.Mode().IsRegular() {
		f.fail(fmt.Sprintf("%s は通常のファイルではありません", path), fmt.Sprintf("%s is not a regular file", path))
		return
	}
	bad := false
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		bad = true
		f.fail(fmt.Sprintf("%s (mode %04o) は他のユーザーが読めます: chmod 600 %s", path, perm, path),
			fmt.Sprintf("%s (mode %04o) is readable by other users: chmod 600 %s", path, perm, path))
	}
	if owner, ok := fileOwner(fi); ok && owner != r.UID {
		bad = true
		f.fail(fmt.Sprintf("%s の所有者は uid %d で、実行ユーザー (uid %d) ではありません: サービスのユーザーに chown してください", path, owner, r.UID),
			fmt.Sprintf("%s is owned by uid %d, not by the running user (uid %d): chown it to the service user", path, owner, r.UID))
	}
	if rf, err := os.Open(path); err != nil {
		bad = true
		f.fail(fmt.Sprintf("%s を読めません: %v", path, err), fmt.Sprintf("%s cannot be read: %v", path, err))
	} else {
		rf.Close()
	}
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o022 != 0 {
		bad = true
		f.fail(fmt.Sprintf("鍵のディレクトリ %s (mode %04o) は他のユーザーが書き込めます (鍵を差し替えられます): chmod 700 %s", dir, di.Mode().Perm(), dir),
			fmt.Sprintf("the key directory %s (mode %04o) is writable by other users, who could replace the key: chmod 700 %s", dir, di.Mode().Perm(), dir))
	}
	if !bad {
		f.ok(fmt.Sprintf("%s: mode %04o、所有者 uid %d", path, fi.Mode().Perm(), r.UID),
			fmt.Sprintf("%s: mode %04o, owner uid %d", path, fi.Mode().Perm(), r.UID))
	}
}

// sizeText formats a byte count in MiB or GiB.
func sizeText(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
