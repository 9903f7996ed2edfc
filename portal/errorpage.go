package portal

import (
	"errors"
	"net/http"
)

// errPage is the page a form shows again for known errors: its HTTP status
// and message key.
type errPage struct {
	status int
	msg    string
	errs   []error
}

// on is the errPage for errs.
func on(status int, msg string, errs ...error) errPage {
	return errPage{status: status, msg: msg, errs: errs}
}

// errorPage shows template tmpl again with the message of the first of pages
// whose errors err matches (errors.Is), and reports whether it did.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, tmpl string, a *accountView, data any, err error, pages ...errPage) bool {
	if err == nil {
		return false
	}
	for _, p := range pages {
		for _, e := range p.errs {
			if errors.Is(err, e) {
				s.page(w, r, p.status, tmpl, a, p.msg, data)
				return true
			}
		}
	}
	return false
}
