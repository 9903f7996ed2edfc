package clamd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sealgate/sealgate/scan/clamd"
)

// How the gateway scans a part while it seals it: the scanner is one more writer of the
// part's decoded bytes (io.MultiWriter with the sealer and the inspector), the verdict comes
// at Close. Without a clamd listening, this prints the unavailable branch.
func Example() {
	c, err := clamd.New(clamd.Config{Address: "/nonexistent/clamd.ctl", Timeout: 5 * time.Second})
	if err != nil {
		panic(err)
	}
	s, err := c.Scan(context.Background())
	if err == nil {
		_, err = io.Copy(s, strings.NewReader("the part's decoded bytes"))
		if err == nil {
			err = s.Close()
		} else {
			s.Abort()
		}
	}
	switch {
	case errors.Is(err, clamd.ErrUnavailable):
		fmt.Println("451: scanner unavailable (or hold, by configuration)")
	case err != nil:
		fmt.Println("451: not scanned:", errors.Is(err, clamd.ErrLimit))
	case s.Verdict().Infected:
		fmt.Println("554: malware", s.Verdict().Signature)
	default:
		fmt.Println("clean")
	}
	// Output: 451: scanner unavailable (or hold, by configuration)
}
