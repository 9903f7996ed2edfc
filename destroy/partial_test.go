package destroy_test

import (
	"os"
	"testing"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/seed"
)

// TestEndContractPartialDownloads: the certificate lists partial downloads
// as downloads. A recipient whose every download stopped part-way is
// "downloaded, partial" with the most plaintext any of them delivered; one
// who also completed a download is "downloaded" (not partial); refused and
// aborted attempts count for nothing. The certificate verifies.
func TestEndContractPartialDownloads(t *testing.T) {
	f := newFixture(t, contract.Spec{})
	ts := f.seed(t, seed.Options{Transfers: 1, FilesPerTransfer: 1, Recipients: []string{"carol@client.example", "dave@client.example"}})
	tr := ts[0]
	add := func(rcpt, result string, details map[string]string) int64 {
		t.Helper()
		var idx int64
		err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
			var err error
			idx, err = f.Ledger.Append(f.ctx, tx, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + rcpt, Contract: f.c.Code,
				Transfer: tr.ID, Recipient: rcpt, File: tr.Files[0].Name, SHA256: tr.Files[0].SHA256, Size: int64(len(tr.Files[0].Plain)),
				Result: result, Details: details})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	add("carol@client.example", "refused", nil)
	carolFirst := add("carol@client.example", audit.ResultPartial, map[string]string{"format": "plain", "bytes": "500", "plaintext_bytes": "500"})
	carolMost := add("carol@client.example", audit.ResultPartial, map[string]string{"format": "age", "bytes": "70000", "plaintext_bytes": "65536"})
	add("carol@client.example", audit.ResultPartial, map[string]string{"format": "plain", "bytes": "700", "plaintext_bytes": "700"})
	add("carol@client.example", "aborted", map[string]string{"format": "age", "bytes": "100"})
	daveFirst := add("dave@client.example", audit.ResultPartial, map[string]string{"format": "plain", "bytes": "100", "plaintext_bytes": "100"})
	daveFull := add("dave@client.example", "ok", map[string]string{"format": "plain"})

	iss, err := destroy.EndContract(f.ctx, f.deps("host/1"), f.c.Code, "cli:alice", "done")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(iss.JSONPath)
	if err != nil {
		t.Fatal(err)
	}
	cert, rep, err := audit.VerifyCertificate(data, f.VKey)
	if err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	if rep.Downloaded != 2 {
		t.Fatalf("report: %d downloaded, want 2", rep.Downloaded)
	}
	got := map[string]audit.CertDownload{}
	for _, d := range cert.Transfers[0].Files[0].Downloads {
		got[d.Recipient] = d
	}
	c, d := got["carol@client.example"], got["dave@client.example"]
	if !c.Downloaded || !c.Partial || c.Bytes != 65536 || c.Count != 3 || c.Event == nil || *c.Event != carolFirst || c.ExtentEvent == nil || *c.ExtentEvent != carolMost {
		t.Fatalf("carol: %+v; want downloaded, partial, 65536 bytes, 3 downloads, first #%d, extent #%d", c, carolFirst, carolMost)
	}
	if !d.Downloaded || d.Partial || d.Bytes != 0 || d.Count != 2 || d.Event == nil || *d.Event != daveFirst || d.ExtentEvent == nil || *d.ExtentEvent != daveFull {
		t.Fatalf("dave: %+v; want downloaded, complete, 2 downloads, first #%d, extent #%d", d, daveFirst, daveFull)
	}
}
