package metrics_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/outbox"
)

// ruleFile is the part of a Prometheus rule file the README's example uses.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// readmeAlerts returns the YAML between the alert markers of README.md.
func readmeAlerts(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- alerts: begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- alerts: end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no alerts block")
	}
	block = strings.TrimSpace(block)
	block, ok = strings.CutPrefix(block, "```yaml\n")
	block, ok2 = strings.CutSuffix(block, "```")
	if !ok || !ok2 {
		t.Fatalf("the alerts block is not one yaml code block:\n%s", block)
	}
	return block
}

var (
	// A metric name of sealgate with its label matchers, if any.
	selectorRE = regexp.MustCompile(`\b(sealgate_[a-z0-9_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	// Labels of by (...) and without (...).
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	// $labels.x in annotations.
	templateRE = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// exposed gathers every family a serving process has (the state collector
// included, with a checkpoint so that its age is present), each series
// created at zero: name → label name → the values present.
func exposed(t *testing.T) map[string]map[string]map[string]bool {
	t.Helper()
	m := metrics.New()
	m.Watch(metrics.State{
		Queue:     func(context.Context) ([]outbox.Pending, error) { return nil, nil },
		Ledger:    func(context.Context) (audit.Status, error) { return audit.Status{CheckpointAt: time.Now()}, nil },
		Now:       time.Now,
		Witnesses: func() []metrics.Witness { return []metrics.Witness{{}} },
	})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]map[string]bool{}
	add := func(name string, series []*dto.Metric) {
		labels := map[string]map[string]bool{}
		for _, s := range series {
			for _, lp := range s.GetLabel() {
				if labels[lp.GetName()] == nil {
					labels[lp.GetName()] = map[string]bool{}
				}
				labels[lp.GetName()][lp.GetValue()] = true
			}
		}
		out[name] = labels
	}
	for _, mf := range mfs {
		add(mf.GetName(), mf.GetMetric())
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				add(mf.GetName()+suffix, mf.GetMetric())
			}
			out[mf.GetName()+"_bucket"]["le"] = nil // any bound
		}
	}
	return out
}

// The README's example alerts are a valid rule file whose expressions name
// only metrics, labels and label values a sealgate process exposes, and
// whose durations and templates are valid; it has the three alerts the
// operations section promises (queue age, checkpoint age, store errors).
func TestReadmeAlerts(t *testing.T) {
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(readmeAlerts(t)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("the alerts block is not a rule file: %v", err)
	}
	families := exposed(t)
	covered := map[string]bool{}
	var n int
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a name and rules are required", g.Name)
		}
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: alert, expr and a summary are required", r)
				continue
			}
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %q", r.Alert, r.Expr)
			}
			sels := selectorRE.FindAllStringSubmatch(r.Expr, -1)
			if len(sels) == 0 {
				t.Errorf("%s: %q names no sealgate metric", r.Alert, r.Expr)
			}
			// Labels the expression may group by and templates may use:
			// those of every metric it names.
			available := map[string]bool{}
			for _, sel := range sels {
				name := sel[1]
				labels, ok := families[name]
				if !ok {
					t.Errorf("%s: no metric %s", r.Alert, name)
					continue
				}
				covered[name] = true
				for l := range labels {
					available[l] = true
				}
				for _, m := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
					values, ok := labels[m[1]]
					switch {
					case !ok:
						t.Errorf("%s: %s has no label %s", r.Alert, name, m[1])
					case m[2] == "=" && values != nil && !values[m[3]]:
						t.Errorf("%s: %s{%s} never has the value %q", r.Alert, name, m[1], m[3])
					case m[2] == "=~" || m[2] == "!~":
						if _, err := regexp.Compile("^(?:" + m[3] + ")$"); err != nil {
							t.Errorf("%s: %s: %v", r.Alert, m[0], err)
						}
					}
				}
			}
			for _, grp := range groupingRE.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range strings.Split(grp[1], ",") {
					if l = strings.TrimSpace(l); l != "" && !available[l] {
						t.Errorf("%s: groups by %s, a label none of its metrics has", r.Alert, l)
					}
				}
			}
			for _, text := range r.Annotations {
				for _, l := range templateRE.FindAllStringSubmatch(text, -1) {
					if !available[l[1]] {
						t.Errorf("%s: the annotation uses $labels.%s, a label none of its metrics has", r.Alert, l[1])
					}
				}
			}
		}
	}
	for _, want := range []string{"sealgate_outbound_oldest_age_seconds", "sealgate_ledger_unsigned_age_seconds", "sealgate_store_errors_total"} {
		if !covered[want] {
			t.Errorf("no alert on %s", want)
		}
	}
	t.Logf("%d rules checked", n)
}
