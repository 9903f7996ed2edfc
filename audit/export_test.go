package audit

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
)

func TestExportCSV(t *testing.T) {
	f := newFixture(t)
	names := []string{"見積書（最終版）.xlsx", "=HYPERLINK(\"http://evil\").csv", "+1-2", "-cmd", "@SUM(A1)", "a,b\"c.txt", "機密 資料\u3000全角.pdf"}
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		for i, n := range names {
			if _, err := f.l.Append(f.ctx, tx, Event{
				Type: TypeFileSealed, Actor: "smtp:192.0.2.1", Contract: "ACME-2026",
				File: n, Size: int64(100 + i), SHA256: strings.Repeat("0", 64),
			}); err != nil {
				return err
			}
		}
		_, err := f.l.Append(f.ctx, tx, Event{Type: TypeLogin, Actor: "carol", Contract: "OTHER"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	jst := time.FixedZone("JST", 9*3600)
	var progress []int64
	var buf bytes.Buffer
	err = f.l.Export(f.ctx, f.db, ExportOptions{Contract: "ACME-2026", Format: FormatCSV, Signer: f.signer, Location: jst, Actor: "manager"},
		&buf, func(done, total int64) { progress = append(progress, done, total) })
	if err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if !bytes.HasPrefix(out, []byte{0xEF, 0xBB, 0xBF}) {
		t.Fatalf("no UTF-8 BOM: % x", out[:4])
	}
	body := out[3:]
	if bytes.Count(body, []byte("\r\n")) != len(names)+1 || bytes.Count(body, []byte("\n")) != len(names)+1 {
		t.Fatalf("want %d CRLF-terminated lines:\n%q", len(names)+1, body)
	}
	r := csv.NewReader(bytes.NewReader(body))
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	hdr := strings.Join(recs[0], ",")
	for _, want := range []string{"番号 / No.", "日時 (UTC+09:00) / Time (UTC+09:00)", "種別 / Type", "種別名 / Type name", "ファイル名 / File name", "実行者 / Actor"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("header lacks %q: %s", want, hdr)
		}
	}
	col := func(name string) int {
		for i, h := range recs[0] {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %q", name)
		return -1
	}
	fileCol, typeCol, nameCol, timeCol := col("ファイル名 / File name"), col("種別 / Type"), col("種別名 / Type name"), col("日時 (UTC+09:00) / Time (UTC+09:00)")
	if len(recs) != len(names)+1 {
		t.Fatalf("%d rows", len(recs))
	}
	for i, n := range names {
		got := recs[i+1][fileCol]
		want := n
		if strings.ContainsAny(n[:1], "=+-@") {
			want = "'" + n // formula injection defused
		}
		if got != want {
			t.Errorf("file name %q came back as %q", n, got)
		}
		if recs[i+1][typeCol] != TypeFileSealed || recs[i+1][nameCol] != "ファイル暗号化・保管 / File sealed" {
			t.Errorf("type columns %q %q", recs[i+1][typeCol], recs[i+1][nameCol])
		}
		if !strings.HasPrefix(recs[i+1][timeCol], "2026-04-01 09:00:00.") {
			t.Errorf("time not in JST: %q", recs[i+1][timeCol])
		}
	}
	if len(progress) < 2 || progress[len(progress)-2] != int64(len(names)) || progress[len(progress)-1] != int64(len(names)) {
		t.Errorf("progress %v", progress)
	}
	// The export is recorded after the checkpoint it was taken against.
	n, _ := f.l.Size(f.ctx, f.db.Read())
	last, _ := f.l.Record(f.ctx, f.db.Read(), n-1)
	prev, _ := f.l.Record(f.ctx, f.db.Read(), n-2)
	ev, err := ParseRecord(last)
	if err != nil || ev.Type != TypeExportMade || ev.Actor != "manager" || ev.Details["format"] != "csv" ||
		ev.Details["events"] != "7" || ev.Details["contract"] != "ACME-2026" || ev.Details["checkpoint"] != "8" {
		t.Fatalf("export.made = %s", last)
	}
	if !bytes.Contains(prev, []byte(TypeCheckpointSigned)) {
		t.Fatalf("entry before export.made = %s", prev)
	}
}

func TestExportHTML(t *testing.T) {
	f := newFixture(t)
	f.appendN(16, event)
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		_, err := f.l.Append(f.ctx, tx, Event{Type: TypeFileSealed, Actor: "x", Contract: "ACME-2026", File: `<script>alert("x")</script>.pdf`})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := string(f.export(ExportOptions{Contract: "ACME-2026", Format: FormatHTML}))
	for _, want := range []string{
		"<!DOCTYPE html>", `<html lang="ja">`, "@media print",
		"受領・作成", "配布", "持出し（承認）", "返却・破棄", "アクセス・アカウント",
		"ファイル暗号化・保管", "鍵の消去", "How to verify", "sealgate audit verify --key",
		testOrigin, "&lt;script&gt;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(out, "<script>") {
		t.Error("HTML not escaped")
	}
	if strings.Count(out, "<section") != len(Clauses())+1 {
		t.Errorf("%d sections", strings.Count(out, "<section"))
	}
	// Events of the other contract are not shown.
	if strings.Contains(out, "BETA-01") {
		t.Error("other contract's events exported")
	}
}

func TestExportFilters(t *testing.T) {
	f := newFixture(t)
	f.appendN(20, event)
	mid := f.clock.Now()
	f.appendN(20, func(i int) Event { return event(i + 20) })
	b := f.export(ExportOptions{Contract: "BETA-01", From: mid})
	rep, err := f.verifyBundle(b, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 10 || rep.First != 21 || rep.Last != 39 || rep.From.IsZero() {
		t.Fatalf("report %+v", rep)
	}
	tb := parseBundle(t, b)
	for _, e := range tb.Events {
		ev, err := ParseRecord([]byte(e.Line))
		if err != nil || ev.Contract != "BETA-01" || ev.Time.Before(mid) {
			t.Fatalf("entry %d does not match the filter: %s", e.Index, e.Line)
		}
	}
	// Empty selections export and verify too.
	e := f.export(ExportOptions{Contract: "NONE"})
	if rep, err := f.verifyBundle(e, VerifyOptions{}); err != nil || rep.Entries != 0 {
		t.Fatal(rep, err)
	}
	var buf bytes.Buffer
	if err := f.l.Export(f.ctx, f.db, ExportOptions{Format: "xml", Signer: f.signer}, &buf, nil); err == nil {
		t.Fatal("unknown format accepted")
	}
	if err := f.l.Export(f.ctx, f.db, ExportOptions{Format: FormatJSON}, &buf, nil); err == nil {
		t.Fatal("export without a signer")
	}
}
