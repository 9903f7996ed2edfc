package main

import "github.com/sealgate/sealgate/destroy"

// phaseProgress shows one progress line per destruction phase on a
// terminal.
type phaseProgress struct {
	e   *env
	cur destroy.Phase
	p   *progress
}

func (pp *phaseProgress) update(phase destroy.Phase, done, total int64) {
	if pp.cur != phase {
		if pp.p != nil {
			pp.p.done()
		}
		pp.cur = phase
		pp.p = newProgress(pp.e, phaseLabel(phase))
	}
	pp.p.update(done, total)
}

func (pp *phaseProgress) finish() {
	if pp.p != nil {
		pp.p.done()
	}
}

func phaseLabel(p destroy.Phase) string {
	switch p {
	case destroy.PhaseKeys:
		return "鍵の消去 / destroying keys"
	case destroy.PhaseDelete:
		return "削除 / deleting objects"
	case destroy.PhaseVerify:
		return "削除の確認 / verifying absence"
	}
	return string(p)
}
