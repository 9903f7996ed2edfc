package preflight

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealgate/sealgate/config"
)

func TestConfigFileWithSecretsReadableByEveryone(t *testing.T) {
	c := testConfig(t, map[string]string{"SEALGATE_S3_ENDPOINT": "http://127.0.0.1:1", "SEALGATE_S3_BUCKET": "b", "SEALGATE_S3_SECRET_KEY": "s3cret"})
	file := filepath.Join(t.TempDir(), "sealgate.toml")
	if err := os.WriteFile(file, []byte("# test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	d := deps(c)
	d.ConfigFile = file
	d.ProbeS3 = func(context.Context) error { return nil }
	want(t, check(t, d, "config"), Warn, "readable by every user", "chmod 640")

	os.Chmod(file, 0o640)
	want(t, check(t, d, "config"), OK, "0640")

	// Without secrets a readable configuration is fine.
	c = testConfig(t, nil)
	d = deps(c)
	d.ConfigFile = file
	os.Chmod(file, 0o644)
	want(t, check(t, d, "config"), OK, "0644")
}

// TestConfigFileWritableByOthers: a configuration any local user can
// change (the file, or the folder it is in: the file can be replaced) lets
// them add their network to the relay's trusted networks or point the
// smarthost elsewhere.
func TestConfigFileWritableByOthers(t *testing.T) {
	c := testConfig(t, nil)
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sealgate.toml")
	if err := os.WriteFile(file, []byte("# test\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	d := deps(c)
	d.ConfigFile = file
	want(t, check(t, d, "config"), OK, "0640")

	os.Chmod(file, 0o666)
	want(t, check(t, d, "config"), Error, "writable by every user", "chmod 640")

	os.Chmod(file, 0o640)
	os.Chmod(dir, 0o777)
	want(t, check(t, d, "config"), Error, "writable by every user", "chmod 755")
}

func TestTimezoneThatDoesNotLoad(t *testing.T) {
	c := testConfig(t, map[string]string{"SEALGATE_TIMEZONE": "Asia/Nowhere"})
	want(t, check(t, deps(c), "timezone"), Error, "Asia/Nowhere", "IANA")
	c = testConfig(t, nil)
	want(t, check(t, deps(c), "timezone"), OK, "Asia/Tokyo")
}

func TestDataDir(t *testing.T) {
	t.Run("not yet created", func(t *testing.T) {
		c := testConfig(t, nil)
		want(t, check(t, deps(c), "datadir"), OK, "does not exist yet", "serve creates it")
	})
	t.Run("cannot be created", func(t *testing.T) {
		// /proc/1 takes no new entries, even from root.
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": "/proc/1/sealgate-data"})
		want(t, check(t, deps(c), "datadir"), Error, "cannot be created", "/proc/1")
	})
	t.Run("not writable", func(t *testing.T) {
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": "/proc/1"})
		d := deps(c)
		fi, err := os.Stat("/proc/1")
		if err != nil {
			t.Skip("no /proc/1")
		}
		d.UID, _ = fileOwner(fi)
		want(t, check(t, d, "datadir"), Error, "is not writable", "ReadWritePaths")
	})
	t.Run("not a directory", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o600)
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": file})
		want(t, check(t, deps(c), "datadir"), Error, "is not a directory")
	})
	t.Run("open to others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o755)
		os.Chmod(dir, 0o755)
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": dir})
		want(t, check(t, deps(c), "datadir"), Warn, "0755", "chmod 700")
	})
	t.Run("another user's", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o700)
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": dir})
		d := deps(c)
		d.UID = os.Getuid() + 4242
		want(t, check(t, d, "datadir"), Error, "not by the running user", "chown -R")
	})
	t.Run("little free space", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o700)
		// Four of the largest messages are more than any disk here.
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_MAX_MESSAGE_SIZE": "1000000GiB"})
		want(t, check(t, deps(c), "datadir"), Warn, "free, less than")
	})
	t.Run("fine", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		os.Mkdir(dir, 0o700)
		c := testConfig(t, map[string]string{"SEALGATE_DATA_DIR": dir})
		want(t, check(t, deps(c), "datadir"), OK, "writable")
		left, _ := os.ReadDir(dir)
		if len(left) != 0 {
			t.Fatalf("the check left %v in the data directory", left)
		}
	})
}

func TestFSStoreFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "objects")
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	c := testConfig(t, nil)
	c.Storage.Dir = dir
	want(t, check(t, deps(c), "storage"), Warn, "0777")
}

// keyConfig makes a data directory with a keys folder and returns its
// configuration.
func keyConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	return testConfig(t, map[string]string{"SEALGATE_DATA_DIR": dir})
}

func TestKeyFiles(t *testing.T) {
	for _, k := range []struct{ check, file string }{{"keys.master", "master.key"}, {"keys.ledger", "ledger.key.age"}} {
		t.Run(k.check, func(t *testing.T) {
			c := keyConfig(t)
			path := filepath.Join(c.DataDir, "keys", k.file)
			// A fresh installation: serve creates the key.
			want(t, check(t, deps(c), k.check), OK, "does not exist yet")
			// A database without the key: restore it.
			os.WriteFile(filepath.Join(c.DataDir, "sealgate.db"), nil, 0o600)
			want(t, check(t, deps(c), k.check), Warn, "is missing but the database exists", "backup")

			os.WriteFile(path, []byte("key\n"), 0o644)
			os.Chmod(path, 0o644)
			want(t, check(t, deps(c), k.check), Error, "(mode 0644) is readable by other users", "chmod 600")

			os.Chmod(path, 0o600)
			want(t, check(t, deps(c), k.check), OK, "mode 0600")

			d := deps(c)
			d.UID = os.Getuid() + 4242
			want(t, check(t, d, k.check), Error, "not by the running user", "chown")

			os.Chmod(filepath.Dir(path), 0o777)
			want(t, check(t, deps(c), k.check), Error, "writable by other users", "chmod 700")
		})
	}
}

func TestMasterKeyRotationUnderWay(t *testing.T) {
	c := keyConfig(t)
	os.WriteFile(c.MasterKeyFile, []byte("key\n"), 0o600)
	os.WriteFile(c.MasterKeyFile+".next", []byte("next\n"), 0o644)
	os.Chmod(c.MasterKeyFile+".next", 0o644)
	want(t, check(t, deps(c), "keys.master"), Error, "master.key.next (mode 0644)")
}

func TestMasterKeyInEnvironment(t *testing.T) {
	c := testConfig(t, nil)
	d := deps(c)
	d.MasterKeyInEnv = true
	want(t, check(t, d, "keys.master"), OK, "SEALGATE_MASTER_KEY")
}
