package preflight

import "testing"

func TestRelay(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		level    Level
		contains []string
	}{
		{"defaults", nil, OK, []string{"127.0.0.0/8", "loopback only"}},
		{"own networks and domains", map[string]string{"SEALGATE_SMTP_ADDR": "0.0.0.0:25", "SEALGATE_TRUSTED_NETWORKS": "127.0.0.0/8,10.1.0.0/16",
			"SEALGATE_INTERNAL_DOMAINS": "corp.example"}, OK, []string{"10.1.0.0/16", "corp.example", "0.0.0.0:25"}},
		{"the whole internet, no domains, listening everywhere: an open relay", map[string]string{"SEALGATE_SMTP_ADDR": "0.0.0.0:25",
			"SEALGATE_TRUSTED_NETWORKS": "0.0.0.0/0"}, Error, []string{"0.0.0.0/0", "open relay"}},
		{"::/0 likewise", map[string]string{"SEALGATE_SMTP_ADDR": "[::]:25", "SEALGATE_TRUSTED_NETWORKS": "::/0"}, Error, []string{"::/0", "open relay"}},
		{"the whole internet with internal domains", map[string]string{"SEALGATE_SMTP_ADDR": "0.0.0.0:25", "SEALGATE_TRUSTED_NETWORKS": "0.0.0.0/0",
			"SEALGATE_INTERNAL_DOMAINS": "corp.example"}, Warn, []string{"the whole internet", "own MTAs"}},
		{"the whole internet, listening on loopback", map[string]string{"SEALGATE_TRUSTED_NETWORKS": "0.0.0.0/0"}, Warn, []string{"the whole internet"}},
		{"a public range", map[string]string{"SEALGATE_TRUSTED_NETWORKS": "127.0.0.0/8,203.0.113.0/24", "SEALGATE_INTERNAL_DOMAINS": "corp.example"},
			Warn, []string{"public range(s) 203.0.113.0/24", "trusted_client_names"}},
		{"no internal domains, listening everywhere", map[string]string{"SEALGATE_SMTP_ADDR": "0.0.0.0:2525"}, Warn, []string{"internal_domains is empty", "as anyone"}},
		{"no internal domains, a private network trusted", map[string]string{"SEALGATE_TRUSTED_NETWORKS": "10.0.0.0/8"}, Warn, []string{"internal_domains is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want(t, check(t, deps(testConfig(t, tc.env)), "relay"), tc.level, tc.contains...)
		})
	}
}
