package portal

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// Downloads are counted by format and result, wrong passphrases and
// locked links in their own counters; the scrape names no file, token,
// passphrase or address.
func TestMetricsCountDownloads(t *testing.T) {
	px := newPortalFixture(t)
	px.post(t, httptest.NewRecorder(), "/download", url.Values{"file": {"0"}, "passphrase": {"wrong-wrong-wrong"}})
	px.post(t, httptest.NewRecorder(), "/download", url.Values{"file": {"0"}, "passphrase": {px.pass}})
	px.post(t, httptest.NewRecorder(), "/age", url.Values{"file": {"1"}})
	px.post(t, httptest.NewRecorder(), "/age", url.Values{"what": {"key"}})
	px.post(t, &cutWriter{left: 1000}, "/download", url.Values{"file": {"1"}, "passphrase": {px.pass}})
	px.post(t, &cutWriter{left: 0}, "/download", url.Values{"file": {"1"}, "passphrase": {px.pass}})
	for range px.maxFail - 1 {
		px.post(t, httptest.NewRecorder(), "/download", url.Values{"file": {"0"}, "passphrase": {"wrong-wrong-wrong"}})
	}

	rec := httptest.NewRecorder()
	px.metrics.Handler(slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	body := string(b)
	for _, want := range []string{
		`sealgate_downloads_total{format="plain",result="ok"} 1`,
		`sealgate_downloads_total{format="age",result="ok"} 1`,
		`sealgate_downloads_total{format="key",result="ok"} 1`,
		`sealgate_downloads_total{format="plain",result="partial"} 1`,
		`sealgate_downloads_total{format="plain",result="aborted"} 1`,
		`sealgate_passphrase_failures_total ` + strconv.Itoa(px.maxFail),
		`sealgate_links_locked_total 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for _, leak := range []string{"f0.bin", "f1.bin", px.token, px.pass, "@", "client.example"} {
		if strings.Contains(body, leak) {
			t.Errorf("the scrape carries %q", leak)
		}
	}
}
