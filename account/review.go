package account

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
)

// ReviewOptions sets what the periodic access review looks for.
type ReviewOptions struct {
	Now          time.Time
	DormantAfter time.Duration // accounts unused this long (default 90 days)
	Window       time.Duration // how far back to look at logins and downloads (default 30 days)
	BurstCount   int           // failed logins ... (default 5)
	BurstWithin  time.Duration // ... within this long make a burst (default 10 minutes)
	OfficeStart  int           // office hours, local time (default 8)
	OfficeEnd    int           // (default 20)
	Location     *time.Location
}

// Review is the access review report (アクセス権の定期レビュー).
type Review struct {
	GeneratedAt time.Time
	Options     ReviewOptions
	Dormant     []DormantAccount
	Bursts      []FailedBurst
	NewIPs      []NewIPLogin
	OffHours    []OffHoursDownload
}

// DormantAccount has not logged in for a while.
type DormantAccount struct {
	Name, Email string
	LastLogin   time.Time // zero: never
	Created     time.Time
}

// FailedBurst is a run of failed logins for one name.
type FailedBurst struct {
	Name     string
	Count    int
	From, To time.Time
	IPs      []string
}

// NewIPLogin is a successful login from an address the account had not
// used before the window.
type NewIPLogin struct {
	Name string
	IP   string
	At   time.Time
}

// OffHoursDownload is a download outside office hours.
type OffHoursDownload struct {
	Recipient, File, Transfer, IP string
	At                            time.Time
}

func (o *ReviewOptions) defaults() {
	if o.DormantAfter <= 0 {
		o.DormantAfter = 90 * 24 * time.Hour
	}
	if o.Window <= 0 {
		o.Window = 30 * 24 * time.Hour
	}
	if o.BurstCount <= 0 {
		o.BurstCount = 5
	}
	if o.BurstWithin <= 0 {
		o.BurstWithin = 10 * time.Minute
	}
	if o.OfficeEnd == 0 {
		o.OfficeStart, o.OfficeEnd = 8, 20
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
}

// BuildReview reads the login history and the ledger.
func (s *Service) BuildReview(ctx context.Context, o ReviewOptions) (*Review, error) {
	o.defaults()
	if o.Now.IsZero() {
		o.Now = s.Now()
	}
	r := &Review{GeneratedAt: o.Now, Options: o}
	db := s.DB.Read()
	accts, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range accts {
		if a.Status != "active" {
			continue
		}
		ref := a.LastLogin
		if ref.IsZero() {
			ref = a.CreatedAt
		}
		if o.Now.Sub(ref) >= o.DormantAfter {
			r.Dormant = append(r.Dormant, DormantAccount{Name: a.Name, Email: a.Email, LastLogin: a.LastLogin, Created: a.CreatedAt})
		}
	}
	since := o.Now.Add(-o.Window).UnixMilli()

	// Failed-login bursts, per name typed.
	rows, err := db.QueryContext(ctx, `SELECT name, at, remote_ip FROM logins WHERE ok = 0 AND at >= ? ORDER BY name, at`, since)
	if err != nil {
		return nil, fmt.Errorf("failed to read logins: %w", err)
	}
	type fail struct {
		at time.Time
		ip string
	}
	byName := map[string][]fail{}
	var names []string
	for rows.Next() {
		var n, ip string
		var at int64
		if err := rows.Scan(&n, &at, &ip); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read logins: %w", err)
		}
		if _, ok := byName[n]; !ok {
			names = append(names, n)
		}
		byName[n] = append(byName[n], fail{time.UnixMilli(at), ip})
	}
	rows.Close()
	for _, n := range names {
		fs := byName[n]
		for i := 0; i < len(fs); {
			j := i
			for j+1 < len(fs) && fs[j+1].at.Sub(fs[i].at) <= o.BurstWithin {
				j++
			}
			if j-i+1 >= o.BurstCount {
				ips := map[string]bool{}
				var list []string
				for _, f := range fs[i : j+1] {
					if !ips[f.ip] {
						ips[f.ip] = true
						list = append(list, f.ip)
					}
				}
				sort.Strings(list)
				r.Bursts = append(r.Bursts, FailedBurst{Name: n, Count: j - i + 1, From: fs[i].at, To: fs[j].at, IPs: list})
				i = j + 1
				continue
			}
			i++
		}
	}

	// Logins from addresses not seen for that account before the window.
	// The name is the one of the group's first login (a correlated
	// subquery: SQLite would take a bare column from the MIN row, which
	// PostgreSQL refuses).
	rows, err = db.QueryContext(ctx, `SELECT (SELECT f.name FROM logins f WHERE f.account_id = l.account_id AND f.remote_ip = l.remote_ip
			AND f.ok = 1 AND f.at >= ?1 ORDER BY f.at LIMIT 1), l.remote_ip, MIN(l.at) FROM logins l
		WHERE l.ok = 1 AND l.at >= ?1 AND l.account_id IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM logins p WHERE p.account_id = l.account_id AND p.ok = 1 AND p.remote_ip = l.remote_ip AND p.at < ?1)
		GROUP BY l.account_id, l.remote_ip ORDER BY MIN(l.at)`, since)
	if err != nil {
		return nil, fmt.Errorf("failed to read logins: %w", err)
	}
	for rows.Next() {
		var n NewIPLogin
		var at int64
		if err := rows.Scan(&n.Name, &n.IP, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read logins: %w", err)
		}
		n.At = time.UnixMilli(at)
		r.NewIPs = append(r.NewIPs, n)
	}
	rows.Close()

	// Downloads outside office hours (from the ledger).
	err = audit.EachOfType(ctx, db, audit.TypeFileDownloaded, time.UnixMilli(since), func(f audit.Found) error {
		ev := f.Event
		if f.Raw != nil || (ev.Result != "ok" && audit.PartialBytes(ev) == 0) { // partial downloads count too
			return nil
		}
		local := ev.Time.In(o.Location)
		h := local.Hour()
		wd := local.Weekday()
		if h < o.OfficeStart || h >= o.OfficeEnd || wd == time.Saturday || wd == time.Sunday {
			r.OffHours = append(r.OffHours, OffHoursDownload{Recipient: ev.Recipient, File: ev.File, Transfer: ev.Transfer, IP: ev.RemoteIP, At: ev.Time})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// MarkReviewed records that a manager reviewed the report.
func (s *Service) MarkReviewed(ctx context.Context, actor string, r *Review, note string) error {
	return s.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := s.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeReviewDone, Actor: actor, Reason: note,
			Details: map[string]string{
				"dormant": fmt.Sprint(len(r.Dormant)), "failed_bursts": fmt.Sprint(len(r.Bursts)),
				"new_ips": fmt.Sprint(len(r.NewIPs)), "off_hours_downloads": fmt.Sprint(len(r.OffHours)),
				"generated_at": r.GeneratedAt.UTC().Format(time.RFC3339),
			}})
		return err
	})
}
