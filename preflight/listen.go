package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// listen (sealgate check only): every listener address can be bound now.
// An address in use is a warning (it may be this gateway, running); a port
// the user may not bind is an error.
func (r *run) listen(context.Context) Result {
	f := newFinding("listen")
	s := r.c.SMTP
	var free []string
	for _, l := range []struct{ key, addr string }{
		{"smtp.relay_addr", s.RelayAddr}, {"smtp.submission_addr", s.SubmissionAddr}, {"smtp.inbound_addr", s.InboundAddr}, {"http.addr", r.c.HTTP.Addr},
		{"metrics.listen", r.c.Metrics.Listen},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		switch {
		case err == nil:
			ln.Close()
			free = append(free, l.addr)
		case errors.Is(err, syscall.EADDRINUSE):
			f.warn(fmt.Sprintf("%s %s は使用中です: 動いている sealgate なら問題ありません。そうでなければ serve は起動できません", l.key, l.addr),
				fmt.Sprintf("%s %s is in use: fine if it is this gateway, running; otherwise serve cannot start", l.key, l.addr))
		case errors.Is(err, syscall.EACCES):
			f.fail(fmt.Sprintf("%s %s で待ち受ける権限がありません: 1024 未満のポートには CAP_NET_BIND_SERVICE が要ります (パッケージの systemd ユニットは AmbientCapabilities で与えます)", l.key, l.addr),
				fmt.Sprintf("no permission to listen on %s %s: ports below 1024 need CAP_NET_BIND_SERVICE (the packaged systemd unit grants it with AmbientCapabilities)", l.key, l.addr))
		default:
			f.fail(fmt.Sprintf("%s %s で待ち受けられません: %v", l.key, l.addr, err), fmt.Sprintf("cannot listen on %s %s: %v", l.key, l.addr, err))
		}
	}
	if f.level <= OK {
		f.ok("待ち受け可能: "+strings.Join(free, ", "), "free to listen on: "+strings.Join(free, ", "))
	}
	return f.result()
}
