package policy

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// The file format. Field tags are the TOML keys; unknown keys are an error.

type fileDoc struct {
	Version        int                 `toml:"version"`
	KeepBuffer     string              `toml:"keep_buffer"`
	Groups         map[string][]string `toml:"groups"`
	Message        []fileMessageRule   `toml:"message"`
	MessageDefault *fileMessageRule    `toml:"message_default"`
	Part           []filePartRule      `toml:"part"`
	PartDefault    *filePartRule       `toml:"part_default"`
}

type fileLabel struct {
	ID   string `toml:"id"`
	Site string `toml:"site"`
}

type fileMessageRule struct {
	Name            string            `toml:"name"`
	Description     string            `toml:"description"`
	Sender          []string          `toml:"sender"`
	Recipient       []string          `toml:"recipient"`
	Contract        []string          `toml:"contract"`
	DefaultContract *bool             `toml:"default_contract"`
	Subject         *string           `toml:"subject"`
	Header          map[string]string `toml:"header"`
	MSIPLabel       []fileLabel       `toml:"msip_label"`
	Sensitivity     []string          `toml:"sensitivity"`
	Action          string            `toml:"action"`
	ReasonJA        string            `toml:"reason_ja"`
	ReasonEN        string            `toml:"reason_en"`
	Notify          []string          `toml:"notify"`
}

type filePartRule struct {
	Name        string   `toml:"name"`
	Description string   `toml:"description"`
	MediaType   []string `toml:"media_type"`
	SniffedType []string `toml:"sniffed_type"`
	Filename    []string `toml:"filename"`
	Disposition []string `toml:"disposition"`
	// DispositionNot matches a part whose disposition is none of these
	// ("" is an absent Content-Disposition).
	DispositionNot []string `toml:"disposition_not"`
	HasFilename    *bool    `toml:"has_filename"`
	Inline         *bool    `toml:"inline"`
	SizeBelow      string   `toml:"size_below"`
	SizeAtLeast    string   `toml:"size_at_least"`
	IndexBelow     *int     `toml:"index_below"`
	IndexAtLeast   *int     `toml:"index_at_least"`
	Encrypted      *bool    `toml:"encrypted"`
	Malware        *bool    `toml:"malware"`
	Action         string   `toml:"action"`
	ReasonJA       string   `toml:"reason_ja"`
	ReasonEN       string   `toml:"reason_en"`
}

//go:embed examples/default.toml
var defaultFile []byte

// Default returns the built-in policy (examples/default.toml): sealgate's behaviour when no
// policy file is configured.
func Default() *Policy {
	p, err := Parse(defaultFile)
	if err != nil {
		panic("policy: the built-in default does not compile: " + err.Error())
	}
	return p
}

// Load reads and compiles the policy file at path.
func Load(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read policy: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ErrInvalid is wrapped by every error of Parse about the content of the file.
var ErrInvalid = errors.New("invalid policy")

// Parse compiles a policy file. Errors name the rule and the key at fault, in English (the
// CLI shows them to an administrator).
func Parse(data []byte) (*Policy, error) {
	var doc fileDoc
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("%w: unknown keys: %s", ErrInvalid, strings.Join(keys, ", "))
	}
	p, err := compile(&doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sum := sha256.Sum256(data)
	p.hash = hex.EncodeToString(sum[:])
	return p, nil
}

// Hash is the SHA-256 of the policy file's bytes, in lower-case hex: the ledger records it
// with every decision and with every policy change.
func (p *Policy) Hash() string { return p.hash }
