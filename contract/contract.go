// Package contract keeps the contract register: which recipients may receive
// information under a contract, how long its links live, how often each
// recipient may download, and its key encryption key (KEK), wrapped to the
// master key, under which every transfer identity of the contract is
// wrapped. Ending a contract erases that KEK (crypto-shredding) before
// deleting the objects (package destroy does that).
//
// # Who may receive
//
// A contract allows a list of domains (a domain also covers its
// subdomains) and addresses, or — AnyRecipient — everyone. The recipients a
// contract lists are its counterparties (Names, Coverage): the gateway
// sends to them only under such a contract. Domains and addresses are kept
// in canonical form (package address) and compared in it. The default
// contract (transfer.default_contract, code DEFAULT) is created with
// AnyRecipient, so that an installation with embedded defaults keeps
// sending to anyone no contract covers; an operator who wants every
// external mail to be covered by a contract sets default_contract = ""
// (and ends DEFAULT or turns off its AnyRecipient, so that no tag can name
// it).
//
// # States
//
//	active ──end──▶ ending ──destruction done, certificate issued──▶ ended
//
// Only an active contract within its start and end dates takes mail. Once
// a contract is ending nothing is ever added to it again: the gateway
// re-checks the status inside the transaction that commits a message.
package contract

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/masterkey"
)

// Contract states.
const (
	StatusActive = "active"
	StatusEnding = "ending" // destruction in progress
	StatusEnded  = "ended"  // destroyed, certificate issued
)

// Key delivery modes.
const (
	KeySeparateMail = "separate-mail" // the passphrase goes in a separate key notice (default)
	KeyPublicKey    = "public-key"    // every recipient must have registered a public key; no passphrase is mailed
	KeyManual       = "manual"        // the sender passes the passphrase by another channel
)

// KeyDeliveryModes lists the accepted key delivery modes.
func KeyDeliveryModes() []string { return []string{KeySeparateMail, KeyPublicKey, KeyManual} }

// Errors; test with errors.Is.
var (
	ErrNotFound   = errors.New("contract: not found")
	ErrExists     = errors.New("contract: a contract with this code exists")
	ErrInvalid    = errors.New("contract: invalid value")
	ErrNotActive  = errors.New("contract: ended")             // status ending or ended
	ErrNotStarted = errors.New("contract: not started yet")   // before its start date
	ErrExpired    = errors.New("contract: past its end date") // after its end date, not yet destroyed
)

// Defaults are the configured values a contract uses where it sets none
// (transfer.link_expiry, transfer.max_link_expiry, transfer.download_limit).
type Defaults struct {
	LinkExpiry    time.Duration
	MaxExpiry     time.Duration
	DownloadLimit int // 0: unlimited
}

// DefaultsFrom returns the configured contract defaults.
func DefaultsFrom(c *config.Config) Defaults {
	return Defaults{LinkExpiry: c.Transfer.LinkExpiry.D(), MaxExpiry: c.Transfer.MaxLinkExpiry.D(), DownloadLimit: c.Transfer.DownloadLimit}
}

// DefaultLimit marks a download limit taken from Defaults.
const DefaultLimit = -1

// Contract is one entry of the register.
type Contract struct {
	ID           int64
	Code         string
	Name         string
	Counterparty string
	Manager      string // information manager: account name or e-mail address
	KEKRecipient string
	Status       string

	StartsAt time.Time // zero: no start restriction
	EndsAt   time.Time // exclusive; zero: open-ended

	LinkExpiry    time.Duration // 0: Defaults.LinkExpiry
	MaxExpiry     time.Duration // 0: Defaults.MaxExpiry
	DownloadLimit int           // per recipient and file; 0 unlimited; DefaultLimit: Defaults.DownloadLimit

	ApprovalRequired bool
	KeyDelivery      string
	StripTag         bool
	AnyRecipient     bool
	Domains          []string // lower-case, sorted
	Addresses        []string // lower-case, sorted

	CreatedAt      time.Time
	UpdatedAt      time.Time // zero if never changed
	EndingAt       time.Time // destruction started
	EndedAt        time.Time // destruction finished
	EndOperator    string
	EndReason      string
	KEKDestroyedAt time.Time
}

const columns = `id, code, name, counterparty, manager, kek_recipient, status, starts_at, ends_at,
	link_expiry_ms, max_expiry_ms, download_limit, approval_required, key_delivery, strip_tag, any_recipient,
	created_at, updated_at, ending_at, ended_at, end_operator, end_reason, kek_destroyed_at`

type scanner interface{ Scan(dest ...any) error }

func scanContract(s scanner) (*Contract, error) {
	c := &Contract{}
	var starts, ends, linkExp, maxExp, limit, updated, ending, ended, kekGone sql.NullInt64
	var created int64
	var approval, strip, anyR bool
	if err := s.Scan(&c.ID, &c.Code, &c.Name, &c.Counterparty, &c.Manager, &c.KEKRecipient, &c.Status, &starts, &ends,
		&linkExp, &maxExp, &limit, &approval, &c.KeyDelivery, &strip, &anyR,
		&created, &updated, &ending, &ended, &c.EndOperator, &c.EndReason, &kekGone); err != nil {
		return nil, err
	}
	c.StartsAt, c.EndsAt = msTime(starts), msTime(ends)
	c.LinkExpiry = time.Duration(linkExp.Int64) * time.Millisecond
	c.MaxExpiry = time.Duration(maxExp.Int64) * time.Millisecond
	c.DownloadLimit = DefaultLimit
	if limit.Valid {
		c.DownloadLimit = int(limit.Int64)
	}
	c.ApprovalRequired, c.StripTag, c.AnyRecipient = approval, strip, anyR
	c.CreatedAt = time.UnixMilli(created).UTC()
	c.UpdatedAt, c.EndingAt, c.EndedAt, c.KEKDestroyedAt = msTime(updated), msTime(ending), msTime(ended), msTime(kekGone)
	return c, nil
}

func msTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func msOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// ByCode looks a contract up (codes compare case-insensitively).
func ByCode(ctx context.Context, q database.Querier, code string) (*Contract, error) {
	return one(ctx, q, `code = ? COLLATE NOCASE`, code)
}

// ByID looks a contract up by its database id.
func ByID(ctx context.Context, q database.Querier, id int64) (*Contract, error) {
	return one(ctx, q, `id = ?`, id)
}

func one(ctx context.Context, q database.Querier, where string, arg any) (*Contract, error) {
	c, err := scanContract(q.QueryRowContext(ctx, `SELECT `+columns+` FROM contracts WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, arg)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to look up contract %v: %w", arg, err)
	}
	if err := loadAllowed(ctx, q, []*Contract{c}); err != nil {
		return nil, err
	}
	return c, nil
}

// List returns every contract, ordered by code.
func List(ctx context.Context, q database.Querier) ([]*Contract, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+columns+` FROM contracts ORDER BY code`)
	if err != nil {
		return nil, fmt.Errorf("failed to list contracts: %w", err)
	}
	var out []*Contract
	for rows.Next() {
		c, err := scanContract(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read contract: %w", err)
		}
		out = append(out, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list contracts: %w", err)
	}
	if err := loadAllowed(ctx, q, out); err != nil {
		return nil, err
	}
	return out, nil
}

func loadAllowed(ctx context.Context, q database.Querier, cs []*Contract) error {
	if len(cs) == 0 {
		return nil
	}
	byID := make(map[int64]*Contract, len(cs))
	for _, c := range cs {
		byID[c.ID] = c
		c.Domains, c.Addresses = nil, nil
	}
	query := `SELECT contract_id, kind, value FROM contract_allowed ORDER BY value`
	var args []any
	if len(cs) == 1 {
		query = `SELECT contract_id, kind, value FROM contract_allowed WHERE contract_id = ? ORDER BY value`
		args = append(args, cs[0].ID)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("failed to read allowed recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var kind, value string
		if err := rows.Scan(&id, &kind, &value); err != nil {
			return fmt.Errorf("failed to read allowed recipients: %w", err)
		}
		c := byID[id]
		if c == nil {
			continue
		}
		// Values are stored canonical; rows written before canonical
		// forms may hold a Unicode domain, compared here in its A-label
		// form (only those are parsed: this runs for every message). A
		// value that does not parse can match no canonical address.
		switch kind {
		case "domain":
			if !isASCII(value) {
				if value, _ = NormalizeDomain(value); value == "" {
					continue
				}
			}
			c.Domains = append(c.Domains, value)
		case "address":
			if !isASCII(value) {
				if value, _ = NormalizeAddress(value); value == "" {
					continue
				}
			}
			c.Addresses = append(c.Addresses, value)
		}
	}
	return rows.Err()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Allows reports whether the contract allows sending to addr. It decides
// on the canonical form (package address) only: an address that does not
// parse is allowed by no restricting contract.
func (c *Contract) Allows(addr string) bool {
	if c.AnyRecipient {
		return true
	}
	a, err := address.Parse(strings.TrimSpace(addr))
	if err != nil {
		return false
	}
	return c.allowsParsed(a)
}

// Names reports whether the contract names addr among whom it allows (a
// listed address, or a listed domain or subdomain): addr is then one of
// its counterparties. Unlike Allows, AnyRecipient does not count.
func (c *Contract) Names(addr string) bool {
	a, err := address.Parse(strings.TrimSpace(addr))
	return err == nil && c.allowsParsed(a)
}

func (c *Contract) allowsParsed(a address.Address) bool {
	return slices.Contains(c.Addresses, a.Key()) || address.InDomain(a.Domain, c.Domains)
}

// Restricts reports whether the contract names whom it allows (it is not
// an any-recipient contract and lists at least one domain or address).
func (c *Contract) Restricts() bool {
	return !c.AnyRecipient && (len(c.Domains) > 0 || len(c.Addresses) > 0)
}

// FirstDisallowed returns the first address the contract does not allow.
func (c *Contract) FirstDisallowed(addrs []string) (string, bool) {
	for _, a := range addrs {
		if !c.Allows(a) {
			return a, true
		}
	}
	return "", false
}

// Usable returns nil if mail may be sent under the contract at now:
// ErrNotActive once it is ending or ended, ErrNotStarted before its start
// and ErrExpired from its end date on.
func (c *Contract) Usable(now time.Time) error {
	switch {
	case c.Status != StatusActive:
		return fmt.Errorf("%w: %s", ErrNotActive, c.Code)
	case !c.StartsAt.IsZero() && now.Before(c.StartsAt):
		return fmt.Errorf("%w: %s starts %s", ErrNotStarted, c.Code, c.StartsAt.Format(time.RFC3339))
	case !c.EndsAt.IsZero() && !now.Before(c.EndsAt):
		return fmt.Errorf("%w: %s ended %s", ErrExpired, c.Code, c.EndsAt.Format(time.RFC3339))
	}
	return nil
}

// LinkExpiryOr returns the contract's link lifetime, or d's.
func (c *Contract) LinkExpiryOr(d Defaults) time.Duration {
	if c.LinkExpiry > 0 {
		return c.LinkExpiry
	}
	return d.LinkExpiry
}

// MaxExpiryOr returns the longest a link may live under the contract, or d's.
func (c *Contract) MaxExpiryOr(d Defaults) time.Duration {
	m := c.MaxExpiry
	if m <= 0 {
		m = d.MaxExpiry
	}
	if l := c.LinkExpiryOr(d); m < l {
		m = l
	}
	return m
}

// DownloadLimitOr returns the download limit per recipient and file (0:
// unlimited).
func (c *Contract) DownloadLimitOr(d Defaults) int {
	if c.DownloadLimit == DefaultLimit {
		return d.DownloadLimit
	}
	return c.DownloadLimit
}

// ExpiresAt is when a link created at now expires: the contract's link
// lifetime, but never after the contract's end date.
func (c *Contract) ExpiresAt(now time.Time, d Defaults) time.Time {
	return c.capAtEnd(now.Add(c.LinkExpiryOr(d)))
}

// LatestExpiry is the latest expiry a transfer created at created may be
// extended to: its maximum lifetime, never after the end date.
func (c *Contract) LatestExpiry(created time.Time, d Defaults) time.Time {
	return c.capAtEnd(created.Add(c.MaxExpiryOr(d)))
}

func (c *Contract) capAtEnd(t time.Time) time.Time {
	if !c.EndsAt.IsZero() && t.After(c.EndsAt) {
		return c.EndsAt
	}
	return t
}

// Spec describes a contract to create.
type Spec struct {
	Code             string
	Name             string
	Counterparty     string
	Manager          string
	StartsAt         time.Time
	EndsAt           time.Time
	LinkExpiry       time.Duration // 0: the configured default
	MaxExpiry        time.Duration // 0: the configured default
	DownloadLimit    int           // DefaultLimit: the configured default; 0 unlimited
	ApprovalRequired bool
	KeyDelivery      string // "" = KeySeparateMail
	StripTag         bool
	AnyRecipient     bool
	Domains          []string
	Addresses        []string
}

// ValidCode reports whether code can name a contract: 1 to 64 characters
// of [A-Za-z0-9._-], starting with a letter or digit (e.g. C-2026-001).
func ValidCode(code string) bool {
	if code == "" || len(code) > 64 {
		return false
	}
	for i, r := range code {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '-' || r == '.' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// NormalizeDomain returns the canonical form of a domain (package
// address: IDNA A-labels, lower case, no trailing dot), or ErrInvalid.
func NormalizeDomain(d string) (string, error) {
	canon, err := address.ParseDomain(strings.TrimSpace(d))
	if err != nil {
		return "", fmt.Errorf("%w: domain %q", ErrInvalid, d)
	}
	return canon, nil
}

// NormalizeAddress returns the comparison form of an address (package
// address: Key), or ErrInvalid; routing syntax is invalid.
func NormalizeAddress(a string) (string, error) {
	canon, err := address.Parse(strings.TrimSpace(a))
	if err != nil {
		return "", fmt.Errorf("%w: address %q", ErrInvalid, a)
	}
	return canon.Key(), nil
}

func (s *Spec) normalize() error {
	if !ValidCode(s.Code) {
		return fmt.Errorf("%w: code %q (1-64 of A-Z a-z 0-9 . _ -)", ErrInvalid, s.Code)
	}
	if s.KeyDelivery == "" {
		s.KeyDelivery = KeySeparateMail
	}
	if !slices.Contains(KeyDeliveryModes(), s.KeyDelivery) {
		return fmt.Errorf("%w: key delivery %q (one of %s)", ErrInvalid, s.KeyDelivery, strings.Join(KeyDeliveryModes(), ", "))
	}
	if !s.StartsAt.IsZero() && !s.EndsAt.IsZero() && !s.EndsAt.After(s.StartsAt) {
		return fmt.Errorf("%w: the end date must be after the start date", ErrInvalid)
	}
	if s.LinkExpiry < 0 || s.MaxExpiry < 0 || s.DownloadLimit < DefaultLimit {
		return fmt.Errorf("%w: negative expiry or download limit", ErrInvalid)
	}
	if s.MaxExpiry > 0 && s.LinkExpiry > s.MaxExpiry {
		return fmt.Errorf("%w: the link expiry exceeds the maximum expiry", ErrInvalid)
	}
	for _, p := range []*string{&s.Name, &s.Counterparty, &s.Manager} {
		*p = strings.TrimSpace(*p)
		if audit.Sanitize(*p) != *p || len(*p) > 512 {
			return fmt.Errorf("%w: text %q", ErrInvalid, *p)
		}
	}
	var err error
	if s.Domains, err = normalizeList(s.Domains, NormalizeDomain); err != nil {
		return err
	}
	if s.Addresses, err = normalizeList(s.Addresses, NormalizeAddress); err != nil {
		return err
	}
	return nil
}

func normalizeList(in []string, norm func(string) (string, error)) ([]string, error) {
	var out []string
	for _, v := range in {
		if strings.TrimSpace(v) == "" {
			continue
		}
		n, err := norm(v)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Create adds a contract with a fresh KEK and records contract.created.
func Create(ctx context.Context, db *database.DB, keys *crypto.Keyring, ledger *audit.Ledger, s Spec, actor string, now time.Time) (*Contract, error) {
	if err := s.normalize(); err != nil {
		return nil, err
	}
	ep := keys.Current()
	recipient, wrapped, err := ep.NewContractKey()
	if err != nil {
		return nil, err
	}
	var id int64
	err = db.Write(ctx, func(tx *database.Tx) error {
		if err := masterkey.Fence(ctx, tx, ep); err != nil {
			return err
		}
		if _, err := ByCode(ctx, tx, s.Code); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, s.Code)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		var limit any
		if s.DownloadLimit != DefaultLimit {
			limit = s.DownloadLimit
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO contracts(code, name, counterparty, manager, kek_recipient, kek_wrapped, status,
			starts_at, ends_at, link_expiry_ms, max_expiry_ms, download_limit, approval_required, key_delivery, strip_tag, any_recipient, created_at)
			VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			s.Code, s.Name, s.Counterparty, s.Manager, recipient, wrapped,
			msOrNil(s.StartsAt), msOrNil(s.EndsAt), durOrNil(s.LinkExpiry), durOrNil(s.MaxExpiry), limit,
			s.ApprovalRequired, s.KeyDelivery, s.StripTag, s.AnyRecipient, now.UnixMilli()).Scan(&id); err != nil {
			return fmt.Errorf("failed to create contract %s: %w", s.Code, err)
		}
		if err := writeAllowed(ctx, tx, id, s.Domains, s.Addresses); err != nil {
			return err
		}
		c := &Contract{}
		applySpec(c, &s)
		_, err = ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeContractCreated, Actor: actor, Contract: s.Code,
			Details: describe(c)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return ByID(ctx, db.Read(), id)
}

func durOrNil(d time.Duration) any {
	if d <= 0 {
		return nil
	}
	return d.Milliseconds()
}

func applySpec(c *Contract, s *Spec) {
	c.Code, c.Name, c.Counterparty, c.Manager = s.Code, s.Name, s.Counterparty, s.Manager
	c.StartsAt, c.EndsAt = s.StartsAt, s.EndsAt
	c.LinkExpiry, c.MaxExpiry, c.DownloadLimit = s.LinkExpiry, s.MaxExpiry, s.DownloadLimit
	c.ApprovalRequired, c.KeyDelivery, c.StripTag, c.AnyRecipient = s.ApprovalRequired, s.KeyDelivery, s.StripTag, s.AnyRecipient
	c.Domains, c.Addresses = s.Domains, s.Addresses
}

func specOf(c *Contract) Spec {
	return Spec{Code: c.Code, Name: c.Name, Counterparty: c.Counterparty, Manager: c.Manager, StartsAt: c.StartsAt, EndsAt: c.EndsAt,
		LinkExpiry: c.LinkExpiry, MaxExpiry: c.MaxExpiry, DownloadLimit: c.DownloadLimit, ApprovalRequired: c.ApprovalRequired,
		KeyDelivery: c.KeyDelivery, StripTag: c.StripTag, AnyRecipient: c.AnyRecipient,
		Domains: slices.Clone(c.Domains), Addresses: slices.Clone(c.Addresses)}
}

func writeAllowed(ctx context.Context, tx *database.Tx, id int64, domains, addresses []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM contract_allowed WHERE contract_id = ?`, id); err != nil {
		return fmt.Errorf("failed to update allowed recipients: %w", err)
	}
	for _, l := range []struct {
		kind string
		vs   []string
	}{{"domain", domains}, {"address", addresses}} {
		for _, v := range l.vs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO contract_allowed(contract_id, kind, value) VALUES (?, ?, ?)`, id, l.kind, v); err != nil {
				return fmt.Errorf("failed to record allowed recipient: %w", err)
			}
		}
	}
	return nil
}

// describe renders the settings of a contract for ledger details.
func describe(c *Contract) map[string]string {
	d := map[string]string{
		"name":              c.Name,
		"counterparty":      c.Counterparty,
		"manager":           c.Manager,
		"starts_at":         fmtTime(c.StartsAt),
		"ends_at":           fmtTime(c.EndsAt),
		"link_expiry":       fmtDur(c.LinkExpiry),
		"max_expiry":        fmtDur(c.MaxExpiry),
		"download_limit":    fmtLimit(c.DownloadLimit),
		"approval_required": strconv.FormatBool(c.ApprovalRequired),
		"key_delivery":      c.KeyDelivery,
		"strip_tag":         strconv.FormatBool(c.StripTag),
		"any_recipient":     strconv.FormatBool(c.AnyRecipient),
		"domains":           strings.Join(c.Domains, ","),
		"addresses":         strings.Join(c.Addresses, ","),
	}
	for k, v := range d {
		if v == "" {
			delete(d, k)
		}
	}
	return d
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtDur(d time.Duration) string {
	if d <= 0 {
		return "default"
	}
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func fmtLimit(n int) string {
	switch n {
	case DefaultLimit:
		return "default"
	case 0:
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// Changes are the fields Update sets; nil fields are left alone. A zero
// time clears a date; a zero duration selects the configured default.
type Changes struct {
	Name, Counterparty, Manager *string
	StartsAt, EndsAt            *time.Time
	LinkExpiry, MaxExpiry       *time.Duration
	DownloadLimit               *int
	ApprovalRequired            *bool
	KeyDelivery                 *string
	StripTag, AnyRecipient      *bool
	Domains, Addresses          *[]string // replace the list
	AddDomains, AddAddresses    []string
	RemoveDomains               []string
	RemoveAddresses             []string
}

// Update changes an active contract's settings and records
// contract.changed with each changed field (and its previous value).
func Update(ctx context.Context, db *database.DB, ledger *audit.Ledger, code string, ch Changes, actor string, now time.Time) (*Contract, error) {
	var id int64
	err := db.Write(ctx, func(tx *database.Tx) error {
		c, err := ByCode(ctx, tx, code)
		if err != nil {
			return err
		}
		if c.Status != StatusActive {
			return fmt.Errorf("%w: %s is %s and can no longer be changed", ErrNotActive, c.Code, c.Status)
		}
		id = c.ID
		s := specOf(c)
		// Values written before addresses were canonical may no longer
		// parse (routing syntax such as a%b@client.example): they match
		// no recipient, and are dropped here — recorded in the change —
		// rather than blocking every update of the contract.
		s.Domains = slices.DeleteFunc(s.Domains, func(d string) bool { _, err := NormalizeDomain(d); return err != nil })
		s.Addresses = slices.DeleteFunc(s.Addresses, func(a string) bool { _, err := NormalizeAddress(a); return err != nil })
		set := func(dst, src *string) {
			if src != nil {
				*dst = *src
			}
		}
		set(&s.Name, ch.Name)
		set(&s.Counterparty, ch.Counterparty)
		set(&s.Manager, ch.Manager)
		set(&s.KeyDelivery, ch.KeyDelivery)
		if ch.StartsAt != nil {
			s.StartsAt = *ch.StartsAt
		}
		if ch.EndsAt != nil {
			s.EndsAt = *ch.EndsAt
		}
		if ch.LinkExpiry != nil {
			s.LinkExpiry = *ch.LinkExpiry
		}
		if ch.MaxExpiry != nil {
			s.MaxExpiry = *ch.MaxExpiry
		}
		if ch.DownloadLimit != nil {
			s.DownloadLimit = *ch.DownloadLimit
		}
		if ch.ApprovalRequired != nil {
			s.ApprovalRequired = *ch.ApprovalRequired
		}
		if ch.StripTag != nil {
			s.StripTag = *ch.StripTag
		}
		if ch.AnyRecipient != nil {
			s.AnyRecipient = *ch.AnyRecipient
		}
		if ch.Domains != nil {
			s.Domains = slices.Clone(*ch.Domains)
		}
		if ch.Addresses != nil {
			s.Addresses = slices.Clone(*ch.Addresses)
		}
		s.Domains = append(s.Domains, ch.AddDomains...)
		s.Addresses = append(s.Addresses, ch.AddAddresses...)
		if err := s.normalize(); err != nil {
			return err
		}
		s.Domains, err = removeAll(s.Domains, ch.RemoveDomains, NormalizeDomain)
		if err != nil {
			return err
		}
		s.Addresses, err = removeAll(s.Addresses, ch.RemoveAddresses, NormalizeAddress)
		if err != nil {
			return err
		}
		next := *c
		applySpec(&next, &s)
		before, after := describe(c), describe(&next)
		details := map[string]string{}
		for k, v := range after {
			if before[k] != v {
				details[k] = v
				details["was_"+k] = before[k]
			}
		}
		for k, v := range before {
			if _, ok := after[k]; !ok {
				details[k] = ""
				details["was_"+k] = v
			}
		}
		if len(details) == 0 {
			return nil // nothing changed
		}
		for k, v := range details {
			if v == "" {
				details[k] = "-"
			}
		}
		var limit any
		if s.DownloadLimit != DefaultLimit {
			limit = s.DownloadLimit
		}
		if _, err := tx.ExecContext(ctx, `UPDATE contracts SET name = ?, counterparty = ?, manager = ?, starts_at = ?, ends_at = ?,
			link_expiry_ms = ?, max_expiry_ms = ?, download_limit = ?, approval_required = ?, key_delivery = ?, strip_tag = ?, any_recipient = ?,
			updated_at = ? WHERE id = ?`,
			s.Name, s.Counterparty, s.Manager, msOrNil(s.StartsAt), msOrNil(s.EndsAt), durOrNil(s.LinkExpiry), durOrNil(s.MaxExpiry), limit,
			s.ApprovalRequired, s.KeyDelivery, s.StripTag, s.AnyRecipient, now.UnixMilli(), c.ID); err != nil {
			return fmt.Errorf("failed to update contract %s: %w", c.Code, err)
		}
		if err := writeAllowed(ctx, tx, c.ID, s.Domains, s.Addresses); err != nil {
			return err
		}
		_, err = ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeContractChanged, Actor: actor, Contract: c.Code, Details: details})
		return err
	})
	if err != nil {
		return nil, err
	}
	return ByID(ctx, db.Read(), id)
}

func removeAll(list, remove []string, norm func(string) (string, error)) ([]string, error) {
	for _, r := range remove {
		n, err := norm(r)
		if err != nil {
			return nil, err
		}
		list = slices.DeleteFunc(list, func(v string) bool { return v == n })
	}
	return list, nil
}

// Ensure returns the contract with the code, creating it (with a fresh KEK
// and a contract.created ledger event) when missing. It is how the default
// contract comes to exist on a fresh installation: it allows any recipient
// and takes its link expiry and download limit from the configuration.
func Ensure(ctx context.Context, db *database.DB, keys *crypto.Keyring, ledger *audit.Ledger, code, name string, now time.Time) (*Contract, error) {
	if c, err := ByCode(ctx, db.Read(), code); err == nil {
		return c, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	c, err := Create(ctx, db, keys, ledger, Spec{Code: code, Name: name, AnyRecipient: true, DownloadLimit: DefaultLimit}, "system", now)
	if errors.Is(err, ErrExists) { // created meanwhile (another process)
		return ByCode(ctx, db.Read(), code)
	}
	return c, err
}

// OpenKEK unwraps the contract's KEK. After destruction it returns
// crypto.ErrKeyDestroyed.
func OpenKEK(ctx context.Context, q database.Querier, keys *crypto.Keyring, id int64) (*crypto.ContractKey, error) {
	var wrapped []byte
	if err := q.QueryRowContext(ctx, `SELECT kek_wrapped FROM contracts WHERE id = ?`, id).Scan(&wrapped); err != nil {
		return nil, fmt.Errorf("failed to read contract key: %w", err)
	}
	if len(wrapped) == 0 {
		return nil, crypto.ErrKeyDestroyed
	}
	return keys.OpenContractKey(wrapped)
}

// Status returns the contract's state (StatusActive, StatusEnding,
// StatusEnded) as q sees it: inside a write transaction, the state that
// transaction commits against.
func Status(ctx context.Context, q database.Querier, id int64) (string, error) {
	var status string
	err := q.QueryRowContext(ctx, `SELECT status FROM contracts WHERE id = ?`, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return "", fmt.Errorf("failed to read contract %d: %w", id, err)
	}
	return status, nil
}

// CodesByID returns the codes of the contracts ids, by id. An id that
// names no contract is absent from the map.
func CodesByID(ctx context.Context, q database.Querier, ids ...int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	return out, readCodes(ctx, q, out, `SELECT id, code FROM contracts WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`, idsJSON(ids))
}

// IDsByCode returns the ids of the contracts codes (compared exactly), by
// code. A code that names no contract is absent from the map.
func IDsByCode(ctx context.Context, q database.Querier, codes ...string) (map[string]int64, error) {
	out := make(map[string]int64, len(codes))
	if len(codes) == 0 {
		return out, nil
	}
	list, _ := json.Marshal(codes)
	byID := map[int64]string{}
	if err := readCodes(ctx, q, byID, `SELECT id, code FROM contracts WHERE code IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
		return nil, err
	}
	for id, code := range byID {
		out[code] = id
	}
	return out, nil
}

// ActiveCodes returns the codes of the active contracts (neither ending
// nor ended), by id.
func ActiveCodes(ctx context.Context, q database.Querier) (map[int64]string, error) {
	out := map[int64]string{}
	return out, readCodes(ctx, q, out, `SELECT id, code FROM contracts WHERE status = 'active'`)
}

func readCodes(ctx context.Context, q database.Querier, out map[int64]string, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("failed to read contract codes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var code string
		if err := rows.Scan(&id, &code); err != nil {
			return fmt.Errorf("failed to read contract codes: %w", err)
		}
		out[id] = code
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read contract codes: %w", err)
	}
	return nil
}

// idsJSON renders ids as a JSON array, one bound parameter for json_each
// (so that one statement serves any number of ids).
func idsJSON(ids []int64) string {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// Candidates returns the active contracts, within their dates at now, that
// restrict their recipients and allow every address in addrs. The inbound
// listener uses it to record a receipt under the sender's contract.
func Candidates(ctx context.Context, q database.Querier, addrs []string, now time.Time) ([]*Contract, error) {
	all, err := List(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []*Contract
	for _, c := range all {
		if !c.Restricts() || c.Usable(now) != nil {
			continue
		}
		if _, bad := c.FirstDisallowed(addrs); !bad {
			out = append(out, c)
		}
	}
	return out, nil
}

// Coverage is how the register covers one recipient: the contracts that
// restrict their recipients and name it (Names) — it is their
// counterparty — by their state at a given time. Routing never lowers
// protection: a recipient with any coverage never goes under a contract
// that does not name it (the default contract among them).
type Coverage struct {
	Active     []*Contract // active and within its dates: mail to the recipient goes under one of these
	Expired    []*Contract // active but past its end date (not yet ended by the scheduler)
	NotStarted []*Contract // active, before its start date
	Ended      []*Contract // ending or ended: nothing more may flow under it
}

// Covered reports whether any contract names the recipient.
func (cv Coverage) Covered() bool {
	return len(cv.Active)+len(cv.Expired)+len(cv.NotStarted)+len(cv.Ended) > 0
}

// CoverageOf returns how the contracts in all (List) cover addr at now.
func CoverageOf(all []*Contract, addr string, now time.Time) Coverage {
	var cv Coverage
	a, err := address.Parse(strings.TrimSpace(addr))
	if err != nil {
		return cv
	}
	for _, c := range all {
		if !c.Restricts() || !c.allowsParsed(a) {
			continue
		}
		switch err := c.Usable(now); {
		case err == nil:
			cv.Active = append(cv.Active, c)
		case errors.Is(err, ErrExpired):
			cv.Expired = append(cv.Expired, c)
		case errors.Is(err, ErrNotStarted):
			cv.NotStarted = append(cv.NotStarted, c)
		default:
			cv.Ended = append(cv.Ended, c)
		}
	}
	return cv
}

// Codes returns the codes of cs, for messages.
func Codes(cs []*Contract) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Code
	}
	return out
}

// ParseTag finds a contract tag in a subject: "[CODE]" or "【CODE】" whose
// CODE is accepted by known (an existing contract). It returns the code as
// written, and the subject without the tag (and the space after it).
// Bracketed words that name no contract ("[External]", a list name) are
// left alone.
func ParseTag(subject string, known func(code string) bool) (code, stripped string, ok bool) {
	for i := 0; i < len(subject); {
		open, close := "", ""
		switch {
		case strings.HasPrefix(subject[i:], "["):
			open, close = "[", "]"
		case strings.HasPrefix(subject[i:], "【"):
			open, close = "【", "】"
		default:
			i++
			continue
		}
		start := i + len(open)
		end := strings.Index(subject[start:], close)
		if end < 0 {
			return "", subject, false
		}
		cand := strings.TrimSpace(subject[start : start+end])
		after := start + end + len(close)
		if ValidCode(cand) && known(cand) {
			rest := subject[after:]
			rest = strings.TrimPrefix(rest, " ")
			rest = strings.TrimPrefix(rest, "\u3000")
			return cand, subject[:i] + rest, true
		}
		i = start
	}
	return "", subject, false
}
