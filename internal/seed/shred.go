package seed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
)

var (
	secretKeyRE  = regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]+`)
	passphraseRE = regexp.MustCompile(`^[0-9A-Z]{5}(-[0-9A-Z]{5}){4}$`)
)

// Holdings is everything a gateway holds that could open a file: every
// value stored in its database, the key files, and passphrases known from
// elsewhere (e.g. the recipient's key notice).
type Holdings struct {
	Blobs       [][]byte
	Identities  []age.Identity
	Passphrases []string
	Opened      int // blobs that could be decrypted
}

// Gather reads every value of every table of db as a candidate blob, and
// adds the given secrets: key file contents (identities are extracted) and
// passphrases.
func Gather(ctx context.Context, db database.Querier, keyFiles [][]byte, passphrases []string) (*Holdings, error) {
	h := &Holdings{Passphrases: passphrases}
	for _, kf := range keyFiles {
		h.Blobs = append(h.Blobs, kf)
		h.addIdentities(kf)
	}
	// SQLite's catalogue, else PostgreSQL's (db is a read pool here,
	// where a failed query leaves nothing behind).
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		rows, err = db.QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, n)
	}
	rows.Close()
	for _, t := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+strings.ReplaceAll(t, `"`, `""`)+`"`)
		if err != nil {
			return nil, fmt.Errorf("failed to read table %s: %w", t, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return nil, err
			}
			for _, v := range vals {
				var b []byte
				switch x := v.(type) {
				case []byte:
					b = bytes.Clone(x)
				case string:
					b = []byte(x)
				}
				if len(b) > 0 {
					h.Blobs = append(h.Blobs, b)
					h.addIdentities(b)
				}
			}
		}
		rows.Close()
	}
	return h, nil
}

func (h *Holdings) addIdentities(b []byte) bool {
	added := false
	for _, m := range secretKeyRE.FindAll(b, -1) {
		id, err := age.ParseX25519Identity(string(m))
		if err != nil {
			continue
		}
		dup := false
		for _, have := range h.Identities {
			if x, ok := have.(*age.X25519Identity); ok && x.String() == id.String() {
				dup = true
			}
		}
		if !dup {
			h.Identities = append(h.Identities, id)
			// A master key also yields the queue key (crypto/queue.go).
			if q, err := crypto.QueueIdentity(id.String()); err == nil {
				h.Identities = append(h.Identities, q)
			}
			added = true
		}
	}
	return added
}

// Expand decrypts every blob it can with what it knows, over and over:
// what a decryption yields (contract keys, key files, passphrases) opens
// more.
func (h *Holdings) Expand() {
	opened := map[int]bool{}
	for changed := true; changed; {
		changed = false
		for i := 0; i < len(h.Blobs); i++ {
			if opened[i] {
				continue
			}
			pt, ok := h.Open(h.Blobs[i])
			if !ok {
				continue
			}
			opened[i] = true
			h.Opened++
			changed = true
			h.addIdentities(pt)
			if p := strings.TrimSpace(string(pt)); passphraseRE.MatchString(p) {
				h.Passphrases = append(h.Passphrases, p)
			}
			if looksAge(pt) {
				h.Blobs = append(h.Blobs, pt)
			}
		}
	}
}

func looksAge(b []byte) bool {
	return bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) || bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN AGE ENCRYPTED FILE-----"))
}

// Open tries to decrypt an age file (binary or armored) with every
// identity and passphrase known.
func (h *Holdings) Open(b []byte) ([]byte, bool) {
	if !looksAge(b) {
		return nil, false
	}
	src := func() io.Reader {
		if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
			return armor.NewReader(bytes.NewReader(bytes.TrimSpace(b)))
		}
		return bytes.NewReader(b)
	}
	if len(h.Identities) > 0 {
		if r, err := age.Decrypt(src(), h.Identities...); err == nil {
			if pt, err := io.ReadAll(r); err == nil {
				return pt, true
			}
		}
	}
	for _, p := range h.Passphrases {
		sid, err := age.NewScryptIdentity(p)
		if err != nil {
			continue
		}
		sid.SetMaxWorkFactor(20)
		if r, err := age.Decrypt(src(), sid); err == nil {
			if pt, err := io.ReadAll(r); err == nil {
				return pt, true
			}
		}
	}
	return nil, false
}
