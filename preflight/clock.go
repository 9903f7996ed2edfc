package preflight

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// clockRef is one server's date and the local time it was read at.
type clockRef struct {
	source, sourceJA string
	ref, local       time.Time
	// uncertainty: half the round trip plus the date's resolution (1 s).
	uncertainty time.Duration
	// informal: a date in an SMTP greeting, written however the server
	// likes; it can warn but not fail.
	informal bool
}

func (r *run) addRef(c clockRef) {
	r.mu.Lock()
	r.refs = append(r.refs, c)
	r.mu.Unlock()
}

// clock compares the local clock with what there is to compare with: the
// S3 server's Date header (HTTP requires it in GMT), a date in the
// smarthost's greeting, the commit time of this binary (the clock cannot be
// before it) and the database's last write (nor before that). It runs
// after the other checks, whose connections it reads the dates of.
func (r *run) clock(ctx context.Context) Result {
	f := newFinding("clock")
	now := r.Now()
	if !r.BuildTime.IsZero() && now.Before(r.BuildTime.Add(-24*time.Hour)) {
		f.fail(fmt.Sprintf("時計 (%s) がこのプログラムのコミット日時 (%s) より前です: 時計を合わせてください (NTP)", now.UTC().Format(time.RFC3339), r.BuildTime.UTC().Format(time.RFC3339)),
			fmt.Sprintf("the clock (%s) is before this binary's commit time (%s): set the clock (NTP)", now.UTC().Format(time.RFC3339), r.BuildTime.UTC().Format(time.RFC3339)))
	}
	for _, name := range []string{"sealgate.db-wal", "sealgate.db"} {
		fi, err := os.Stat(r.c.Path(name))
		if err != nil {
			continue
		}
		if m := fi.ModTime(); m.After(now.Add(time.Minute)) {
			f.warn(fmt.Sprintf("データベース %s の最終書き込み (%s) が現在時刻 (%s) より後です: 時計が戻りました。監査ログの時刻と期限がずれます", name, m.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)),
				fmt.Sprintf("the database %s was last written at %s, after the clock's now (%s): the clock went back; ledger times and expiries are off", name, m.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		}
		break
	}
	if r.c.Storage.Type == "s3" {
		r.s3Date(ctx)
	}
	r.mu.Lock()
	refs := append([]clockRef(nil), r.refs...)
	r.mu.Unlock()
	for _, ref := range refs {
		off := ref.ref.Sub(ref.local)
		excess := off.Abs() - ref.uncertainty
		ja := fmt.Sprintf("%s との時刻のずれ %+.1f 秒 (誤差 ±%.1f 秒)", ref.sourceJA, off.Seconds(), ref.uncertainty.Seconds())
		en := fmt.Sprintf("clock offset %+.1f s (±%.1f s) against the %s", off.Seconds(), ref.uncertainty.Seconds(), ref.source)
		switch {
		case excess > ClockError && !ref.informal:
			f.fail(ja+": 30 秒を超えると TOTP のコードが通らず、記録の時刻も狂います。NTP で時計を合わせてください",
				en+": beyond 30 s TOTP codes are refused and records carry wrong times; synchronise the clock (NTP)")
		case excess > ClockWarning:
			f.warn(ja+": NTP で時計を合わせてください", en+": synchronise the clock (NTP)")
		default:
			f.ok(ja, en)
		}
	}
	if len(refs) == 0 && f.level == Skip {
		bound, boundJA := "", ""
		if !r.BuildTime.IsZero() {
			bound = fmt.Sprintf(" (it is after this binary's commit time, %s)", r.BuildTime.UTC().Format(time.DateOnly))
			boundJA = fmt.Sprintf(" (このプログラムのコミット日時 %s より後であることのみ確認)", r.BuildTime.UTC().Format(time.DateOnly))
		}
		return skip("clock", "比べる相手がありません (S3 ストレージなし、スマートホストの挨拶に日時なし)"+boundJA+": NTP が動いていることを確かめてください (timedatectl、chronyc tracking)",
			"nothing to compare the clock with (no S3 store, no date in the smarthost's greeting)"+bound+": make sure NTP runs (timedatectl, chronyc tracking)")
	}
	return f.result()
}

// s3Date reads the Date header of the S3 server (any answer has one).
func (r *run) s3Date(ctx context.Context) {
	s := r.c.Storage.S3
	base := s.Endpoint
	if !strings.Contains(base, "://") {
		scheme := "https://"
		if s.Insecure {
			scheme = "http://"
		}
		base = scheme + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return
	}
	u.Path = "/"
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return
	}
	t0 := r.Now()
	resp, err := r.HTTP.Do(req)
	t1 := r.Now()
	if err != nil {
		return // the storage check reports an unreachable server
	}
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	r.addRef(clockRef{source: "S3 server " + u.Host + " (HTTP Date header)", sourceJA: "S3 サーバー " + u.Host + " の HTTP Date ヘッダー",
		ref: date, local: t0.Add(t1.Sub(t0) / 2), uncertainty: t1.Sub(t0)/2 + time.Second})
}
