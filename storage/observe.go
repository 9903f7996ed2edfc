package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Operations named to an Observe callback.
const (
	OpPut        = "put"
	OpPutLocked  = "put_locked"
	OpGet        = "get"
	OpGetRange   = "get_range"
	OpStat       = "stat"
	OpDelete     = "delete"
	OpDeleteMany = "delete_many"
	OpList       = "list"
)

// Observe returns st with every failure of the store reported to failed,
// with the operation's name (Op*), before the error is returned unchanged.
// Reading a body that Get or GetRange returned counts as that operation.
// Not failures of the store, and not reported: ErrNotFound (a Stat proving
// absence), a cancelled context (the caller gave up), and an error of the
// caller's own reader (Put) or callback (List). DeleteMany reports each key
// it could not delete.
//
// The result implements exactly the optional interfaces st implements
// (Lister, RangeGetter, BulkDeleter, Retainer), so callers that look for
// them behave as with st; it always implements CoverageReporter, answering
// DeleteCoverage(st), which is what DeleteCoverage says of a store without.
func Observe(st Store, failed func(op string)) Store {
	o := &observed{st: st, failed: failed}
	_, l := st.(Lister)
	_, r := st.(RangeGetter)
	_, b := st.(BulkDeleter)
	_, k := st.(Retainer)
	ls, rg, bd, rt := observedLister{o}, observedRanger{o}, observedBulk{o}, observedRetainer{o}
	switch {
	case !l && !r && !b && !k:
		return o
	case l && !r && !b && !k:
		return struct {
			*observed
			observedLister
		}{o, ls}
	case !l && r && !b && !k:
		return struct {
			*observed
			observedRanger
		}{o, rg}
	case l && r && !b && !k:
		return struct {
			*observed
			observedLister
			observedRanger
		}{o, ls, rg}
	case !l && !r && b && !k:
		return struct {
			*observed
			observedBulk
		}{o, bd}
	case l && !r && b && !k:
		return struct {
			*observed
			observedLister
			observedBulk
		}{o, ls, bd}
	case !l && r && b && !k:
		return struct {
			*observed
			observedRanger
			observedBulk
		}{o, rg, bd}
	case l && r && b && !k:
		return struct {
			*observed
			observedLister
			observedRanger
			observedBulk
		}{o, ls, rg, bd}
	case !l && !r && !b && k:
		return struct {
			*observed
			observedRetainer
		}{o, rt}
	case l && !r && !b && k:
		return struct {
			*observed
			observedLister
			observedRetainer
		}{o, ls, rt}
	case !l && r && !b && k:
		return struct {
			*observed
			observedRanger
			observedRetainer
		}{o, rg, rt}
	case l && r && !b && k:
		return struct {
			*observed
			observedLister
			observedRanger
			observedRetainer
		}{o, ls, rg, rt}
	case !l && !r && b && k:
		return struct {
			*observed
			observedBulk
			observedRetainer
		}{o, bd, rt}
	case l && !r && b && k:
		return struct {
			*observed
			observedLister
			observedBulk
			observedRetainer
		}{o, ls, bd, rt}
	case !l && r && b && k:
		return struct {
			*observed
			observedRanger
			observedBulk
			observedRetainer
		}{o, rg, bd, rt}
	default:
		return struct {
			*observed
			observedLister
			observedRanger
			observedBulk
			observedRetainer
		}{o, ls, rg, bd, rt}
	}
}

type observed struct {
	st     Store
	failed func(op string)
}

// check reports err as a failure of op unless it is not the store's; own
// is an error of the caller's reader or callback (nil: none).
func (o *observed) check(op string, err, own error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, context.Canceled) || (own != nil && errors.Is(err, own)) {
		return err
	}
	o.failed(op)
	return err
}

func (o *observed) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	cr := &callerReader{r: r}
	info, err := o.st.Put(ctx, key, cr)
	return info, o.check(OpPut, err, cr.err)
}

func (o *observed) Get(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	rc, info, err := o.st.Get(ctx, key)
	if err != nil {
		return nil, info, o.check(OpGet, err, nil)
	}
	return &storeReader{rc: rc, o: o, op: OpGet}, info, nil
}

func (o *observed) Stat(ctx context.Context, key string) (Info, error) {
	info, err := o.st.Stat(ctx, key)
	return info, o.check(OpStat, err, nil)
}

func (o *observed) Delete(ctx context.Context, key string) error {
	return o.check(OpDelete, o.st.Delete(ctx, key), nil)
}

func (o *observed) DeleteCoverage() string { return DeleteCoverage(o.st) }

type observedLister struct{ o *observed }

func (l observedLister) List(ctx context.Context, prefix string, fn func(Info) error) error {
	var own error
	err := l.o.st.(Lister).List(ctx, prefix, func(i Info) error {
		if err := fn(i); err != nil {
			own = err
			return err
		}
		return nil
	})
	return l.o.check(OpList, err, own)
}

type observedRanger struct{ o *observed }

func (g observedRanger) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := g.o.st.(RangeGetter).GetRange(ctx, key, offset, length)
	if err != nil {
		return nil, g.o.check(OpGetRange, err, nil)
	}
	return &storeReader{rc: rc, o: g.o, op: OpGetRange}, nil
}

type observedBulk struct{ o *observed }

func (b observedBulk) DeleteMany(ctx context.Context, keys []string) map[string]error {
	failed := b.o.st.(BulkDeleter).DeleteMany(ctx, keys)
	for _, err := range failed {
		b.o.check(OpDeleteMany, err, nil)
	}
	return failed
}

type observedRetainer struct{ o *observed }

func (r observedRetainer) PutLocked(ctx context.Context, key string, rd io.Reader, retainUntil time.Time) (Info, error) {
	cr := &callerReader{r: rd}
	info, err := r.o.st.(Retainer).PutLocked(ctx, key, cr, retainUntil)
	return info, r.o.check(OpPutLocked, err, cr.err)
}

// callerReader remembers the error of the caller's reader, which Put
// wraps: the caller's failure, not the store's.
type callerReader struct {
	r   io.Reader
	err error
}

func (c *callerReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// storeReader reports the first failure while reading a stored body.
type storeReader struct {
	rc       io.ReadCloser
	o        *observed
	op       string
	reported bool
}

func (s *storeReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if err != nil && err != io.EOF && !s.reported {
		s.reported = true
		s.o.check(s.op, err, nil)
	}
	return n, err
}

func (s *storeReader) Close() error { return s.rc.Close() }
