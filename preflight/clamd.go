package preflight

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/scan/clamd"
)

// SignatureAge: clamd signatures older than this are a warning (freshclam
// updates them several times a day).
const SignatureAge = 7 * 24 * time.Hour

// clamd: when scanning is on, clamd answers PING and VERSION, with an
// official signature database that is recent.
func (r *run) clamd(ctx context.Context) Result {
	const name = "clamd"
	if r.Clamd == "" {
		return skip(name, "マルウェア検査は無効 (scan.clamd が空)", "malware scanning is off (scan.clamd is empty)")
	}
	f := newFinding(name)
	cl, err := clamd.New(clamd.Config{Address: r.Clamd, Timeout: r.Timeout})
	if err != nil {
		f.fail(fmt.Sprintf("scan.clamd %q: %v", r.Clamd, err), fmt.Sprintf("scan.clamd %q: %v", r.Clamd, err))
		return f.result()
	}
	if err := cl.Ping(ctx); err != nil {
		f.fail(fmt.Sprintf("clamd (%s) が応答しません: %v (その間のメールは scan.on_unavailable に従い 451 か保留になります)", r.Clamd, err),
			fmt.Sprintf("clamd (%s) does not answer: %v (meanwhile mail is deferred with 451 or held, per scan.on_unavailable)", r.Clamd, err))
		f.transient = true
		return f.result()
	}
	v, err := cl.Version(ctx)
	if err != nil {
		f.fail(fmt.Sprintf("clamd (%s) が VERSION に答えません: %v", r.Clamd, err), fmt.Sprintf("clamd (%s) does not answer VERSION: %v", r.Clamd, err))
		f.transient = true
		return f.result()
	}
	if v.DatabaseDate == "" {
		f.warn(fmt.Sprintf("clamd (%s, %s) に公式のシグネチャがありません (ローカルのシグネチャのみ): freshclam を動かしてください", r.Clamd, v.Engine),
			fmt.Sprintf("clamd (%s, %s) has no official signature database (local signatures only): run freshclam", r.Clamd, v.Engine))
		return f.result()
	}
	date, err := time.Parse(time.ANSIC, strings.Join(strings.Fields(v.DatabaseDate), " "))
	if err != nil {
		date, err = time.Parse("Mon Jan 2 15:04:05 2006", strings.Join(strings.Fields(v.DatabaseDate), " "))
	}
	if err == nil && r.Now().Sub(date) > SignatureAge {
		f.warn(fmt.Sprintf("clamd (%s) のシグネチャ %s は %s のもので %d 日前です: freshclam が動いているか確かめてください", r.Clamd, v.Database, date.Format(time.DateOnly), days(r.Now().Sub(date))),
			fmt.Sprintf("clamd (%s) signatures %s date from %s, %d days ago: check that freshclam runs", r.Clamd, v.Database, date.Format(time.DateOnly), days(r.Now().Sub(date))))
		return f.result()
	}
	f.ok(fmt.Sprintf("clamd (%s): %s", r.Clamd, v.Raw), fmt.Sprintf("clamd (%s): %s", r.Clamd, v.Raw))
	return f.result()
}
