// Command s3upload is the S3 baseline of bench/bigmail: it uploads its
// standard input, of unknown length, to the bucket named by SEALGATE_S3_*
// with minio-go's own multipart upload (Client.PutObject, size -1) in parts
// of -part bytes — what any program piping `age -r` into S3 would do —
// and prints the object's size when the upload is complete.
//
//	age -r age1… plain.bin | go run ./bench/s3upload -key bench/x.age -part 8MiB
//
// With -delete KEY it removes that object instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

func main() {
	key := flag.String("key", "", "object key to upload to")
	del := flag.String("delete", "", "object key to remove (instead of uploading)")
	part := config.Size(s3.DefaultPartSize)
	flag.Func("part", "part size of the multipart upload, e.g. 8MiB (default 8MiB)", func(s string) error { return part.UnmarshalText([]byte(s)) })
	flag.Parse()
	if err := run(*key, *del, int64(part)); err != nil {
		fmt.Fprintln(os.Stderr, "s3upload:", err)
		os.Exit(1)
	}
}

func run(key, del string, part int64) error {
	cfg, ok := s3.ConfigFromEnv(os.Getenv)
	if !ok {
		return fmt.Errorf("failed to configure: SEALGATE_S3_ENDPOINT is not set")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "sealgate"
	}
	cl, err := s3test.Client(cfg)
	if err != nil {
		return fmt.Errorf("failed to make the client: %w", err)
	}
	ctx := context.Background()
	if del != "" {
		if err := cl.RemoveObject(ctx, cfg.Bucket, del, minio.RemoveObjectOptions{}); err != nil {
			return fmt.Errorf("failed to remove %s: %w", del, err)
		}
		return nil
	}
	if key == "" {
		return fmt.Errorf("failed to upload: -key is needed")
	}
	if ok, err := cl.BucketExists(ctx, cfg.Bucket); err != nil {
		return fmt.Errorf("failed to check bucket %s: %w", cfg.Bucket, err)
	} else if !ok {
		if err := cl.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return fmt.Errorf("failed to create bucket %s: %w", cfg.Bucket, err)
		}
	}
	info, err := cl.PutObject(ctx, cfg.Bucket, key, os.Stdin, -1, minio.PutObjectOptions{PartSize: uint64(part)})
	if err != nil {
		return fmt.Errorf("failed to upload %s: %w", key, err)
	}
	fmt.Println(info.Size)
	return nil
}
