package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

func s3Env(cfg s3.Config) []string {
	return []string{
		"SEALGATE_S3_ENDPOINT=" + cfg.Endpoint,
		"SEALGATE_S3_BUCKET=" + cfg.Bucket,
		"SEALGATE_S3_ACCESS_KEY=" + cfg.AccessKey,
		"SEALGATE_S3_SECRET_KEY=" + cfg.SecretKey,
		"SEALGATE_S3_REGION=" + cfg.Region,
		fmt.Sprintf("SEALGATE_S3_INSECURE=%v", cfg.Insecure),
		fmt.Sprintf("SEALGATE_S3_PATH_STYLE=%v", cfg.PathStyle),
	}
}

// TestRelayEndToEndS3 is the main flow with the sealed files in a real S3
// server (versitygw).
func TestRelayEndToEndS3(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "e2e")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: s3Env(cfg)})
	runRelayFlow(t, g, sink)

	// The objects are in the bucket, not on the local disk.
	if n := countFiles(t, g.dir+"/objects"); n != 0 {
		t.Fatalf("%d objects written locally with the S3 store", n)
	}
	cl, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for obj := range cl.ListObjects(context.Background(), cfg.Bucket, minio.ListObjectsOptions{Prefix: "sealed/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d sealed objects in the bucket, want 2", n)
	}
}
