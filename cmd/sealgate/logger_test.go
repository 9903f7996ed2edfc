package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/server"
)

// TestLoggerRedacts: the logger of sealgate's processes — and the
// standard-library loggers made from its handler for net/http and go-smtp —
// never writes a token, passphrase or key, in either format.
func TestLoggerRedacts(t *testing.T) {
	const token, pass, key = "ndzb6q527xy7c4e3yoesc6tkxu6ox47q", "7K2QD-9XJ4M-PZ3RA-W8NHB-5VCTE",
		"AGE-SECRET-KEY-1QQQSYQCYQ5RQWZQFPG9SCRGWPUGPZYSNZS23V7CCFWUFPGH5NYKSQ0PQPK"
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := server.NewLogger(&config.Config{LogFormat: format, LogLevel: "debug"}, &buf)
		log.Debug("request /t/"+token+"/download", "error", errors.New("passphrase "+pass+" and key "+key))
		slog.NewLogLogger(log.Handler(), slog.LevelWarn).Printf("http: panic serving 127.0.0.1:4711: GET /c/%s", token)
		out := buf.String()
		for _, s := range []string{token, pass, key} {
			if strings.Contains(out, s) {
				t.Errorf("%s log holds %q:\n%s", format, s, out)
			}
		}
		if strings.Count(out, "[redacted]") != 4 {
			t.Errorf("%s log:\n%s", format, out)
		}
	}
}
