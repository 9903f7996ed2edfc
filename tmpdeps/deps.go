package tmpdeps

import (
	_ "filippo.io/age"
	_ "github.com/BurntSushi/toml"
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	_ "github.com/emersion/go-message/textproto"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/minio/minio-go/v7"
	_ "golang.org/x/mod/sumdb/note"
	_ "golang.org/x/mod/sumdb/tlog"
	_ "golang.org/x/term"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/crypto/argon2"
	_ "github.com/pquerna/otp/totp"
	_ "modernc.org/sqlite"
	_ "github.com/prometheus/client_golang/prometheus"
)
