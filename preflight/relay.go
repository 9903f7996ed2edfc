package preflight

import (
	"context"
	"fmt"
	"strings"
)

// relay: trusted networks and internal domains that would let strangers
// relay. Every host in trusted_networks relays without AUTH; with
// internal_domains empty the envelope sender is not checked at all.
func (r *run) relay(context.Context) Result {
	f := newFinding("relay")
	s := r.c.SMTP
	prefixes, err := s.Prefixes()
	if err != nil {
		f.fail(err.Error(), err.Error())
		return f.result()
	}
	var everyone, public []string
	beyondLoopback := false
	for _, p := range prefixes {
		a := p.Addr()
		if !a.IsLoopback() {
			beyondLoopback = true
		}
		switch {
		case p.Bits() == 0:
			everyone = append(everyone, p.String())
		case !a.IsLoopback() && !a.IsPrivate():
			public = append(public, p.String())
		}
	}
	listenerOpen := !loopbackAddr(s.RelayAddr)
	noDomains := len(r.c.InternalDomains) == 0
	if len(everyone) > 0 {
		ja := fmt.Sprintf("smtp.trusted_networks の %s はインターネット全体です: どのホストも認証なしで中継できます", strings.Join(everyone, ", "))
		en := fmt.Sprintf("smtp.trusted_networks holds %s, the whole internet: every host may relay without authenticating", strings.Join(everyone, ", "))
		if listenerOpen && noDomains {
			f.fail(ja+"。internal_domains も空なので、誰もが誰にでも、誰の名でも送れるオープンリレーです: 自社の MTA のアドレスだけにしてください",
				en+"; with internal_domains empty too, anyone may send anything as anyone (an open relay): list your own MTAs only")
		} else {
			f.warn(ja+": 自社の MTA のアドレスだけにしてください", en+": list your own MTAs only")
		}
	}
	if len(public) > 0 {
		f.warn(fmt.Sprintf("smtp.trusted_networks にグローバルなアドレス範囲 %s があります: その範囲のすべてのホストが中継できます。プロバイダ (Microsoft 365、Google) の共用範囲は入れず、smtp.trusted_client_names で証明書により信頼してください", strings.Join(public, ", ")),
			fmt.Sprintf("smtp.trusted_networks holds the public range(s) %s: every host in them may relay; never list a provider's shared ranges (Microsoft 365, Google), trust its connectors by certificate (smtp.trusted_client_names)", strings.Join(public, ", ")))
	}
	if noDomains && (listenerOpen || beyondLoopback) {
		f.warn("internal_domains が空です: エンベロープ送信者を確認できず、信頼するクライアントは誰の名でも送れます (宛先はすべて外部扱いで封緘されます): 自社のドメインを設定してください",
			"internal_domains is empty: envelope senders cannot be checked, so every trusted client may send as anyone (every recipient counts as external and is sealed): set your own domains")
	}
	if f.level <= OK {
		nets := make([]string, len(prefixes))
		for i, p := range prefixes {
			nets[i] = p.String()
		}
		where := "ループバックのみで待ち受け"
		whereEN := "listening on loopback only"
		if listenerOpen {
			where, whereEN = s.RelayAddr+" で待ち受け", "listening on "+s.RelayAddr
		}
		f.ok(fmt.Sprintf("信頼するネットワーク %s、内部ドメイン %s、%s", strings.Join(nets, ", "), orNone(r.c.InternalDomains, "なし"), where),
			fmt.Sprintf("trusted networks %s, internal domains %s, %s", strings.Join(nets, ", "), orNone(r.c.InternalDomains, "none"), whereEN))
	}
	return f.result()
}

func orNone(list []string, none string) string {
	if len(list) == 0 {
		return none
	}
	return strings.Join(list, ", ")
}
