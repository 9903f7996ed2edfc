package destroy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/database"
)

// Certificates are recorded (table certificates) as signed JSON, in the
// transaction that ends their contract; the printable page is rendered
// from it (audit.WriteCertificateHTML).

// ErrNoCertificate is returned when no certificate is recorded.
var ErrNoCertificate = errors.New("destroy: no such certificate")

// CertRecord is a recorded certificate.
type CertRecord struct {
	ID         string
	ContractID int64
	IssuedAt   time.Time
	SHA256     string // of JSON, as certificate.issued records it
	JSON       []byte // as issued and signed (audit.ParseCertificate); nil from Certificates
}

// Certificates returns the certificates of a contract, newest first,
// without their JSON.
func Certificates(ctx context.Context, q database.Querier, contractID int64) ([]CertRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, issued_at, sha256 FROM certificates WHERE contract_id = ? ORDER BY issued_at DESC`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to read certificates: %w", err)
	}
	defer rows.Close()
	var out []CertRecord
	for rows.Next() {
		cr := CertRecord{ContractID: contractID}
		var at int64
		if err := rows.Scan(&cr.ID, &at, &cr.SHA256); err != nil {
			return nil, fmt.Errorf("failed to read certificates: %w", err)
		}
		cr.IssuedAt = time.UnixMilli(at)
		out = append(out, cr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read certificates: %w", err)
	}
	return out, nil
}

// LatestCertificate returns the latest certificate of a contract, or
// ErrNoCertificate.
func LatestCertificate(ctx context.Context, q database.Querier, contractID int64) (*CertRecord, error) {
	return certificate(ctx, q, `SELECT id, contract_id, issued_at, sha256, json FROM certificates WHERE contract_id = ? ORDER BY issued_at DESC LIMIT 1`, contractID)
}

// CertificateByID returns one certificate, or ErrNoCertificate.
func CertificateByID(ctx context.Context, q database.Querier, id string) (*CertRecord, error) {
	return certificate(ctx, q, `SELECT id, contract_id, issued_at, sha256, json FROM certificates WHERE id = ?`, id)
}

func certificate(ctx context.Context, q database.Querier, query string, arg any) (*CertRecord, error) {
	cr := &CertRecord{}
	var at int64
	err := q.QueryRowContext(ctx, query, arg).Scan(&cr.ID, &cr.ContractID, &at, &cr.SHA256, &cr.JSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %v", ErrNoCertificate, arg)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read certificate: %w", err)
	}
	cr.IssuedAt = time.UnixMilli(at)
	return cr, nil
}

// recordCertificate records an issued certificate in tx.
func recordCertificate(ctx context.Context, tx *database.Tx, cr CertRecord) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO certificates(id, contract_id, issued_at, sha256, json) VALUES (?, ?, ?, ?, ?)`,
		cr.ID, cr.ContractID, cr.IssuedAt.UnixMilli(), cr.SHA256, cr.JSON); err != nil {
		return fmt.Errorf("failed to record certificate: %w", err)
	}
	return nil
}
