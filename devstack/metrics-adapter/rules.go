package main

// The rules file: prometheus-adapter's format (the `rules:` and `externalRules:` of
// manifests/components/prometheus-adapter/adapter-rules.yaml), read strictly, so that a rule
// using a feature this adapter leaves out (see main.go) stops it at start-up instead of being
// half understood.

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Rules         []ruleSpec `json:"rules"`
	ExternalRules []ruleSpec `json:"externalRules"`
}

type ruleSpec struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]struct {
			Group    string `json:"group"`
			Resource string `json:"resource"`
		} `json:"overrides"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

var (
	podsResource       = schema.GroupResource{Resource: "pods"}
	namespacesResource = schema.GroupResource{Resource: "namespaces"}
	// the series name at the start of a seriesQuery such as `name{label!=""}`
	seriesName = regexp.MustCompile(`^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// rule is one compiled rule: the series it reads, the metric it serves and how to ask for it.
type rule struct {
	Series string
	Metric string
	// Prometheus label -> the resource it names (pods or namespaces)
	Labels map[string]schema.GroupResource
	query  *template.Template
}

// queryArgs are what a metricsQuery template sees, as prometheus-adapter names them.
type queryArgs struct {
	Series            string
	LabelMatchers     string
	LabelValuesByName map[string]string
	GroupBy           string
	GroupBySlice      []string
}

// rules are the rule file compiled: custom (Pods) metrics and external metrics by name.
type rules struct {
	Custom   map[string]*rule
	External map[string]*rule
}

func loadRules(path string) (*rules, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseRules(text)
}

func parseRules(text []byte) (*rules, error) {
	var file ruleFile
	if err := yaml.UnmarshalStrict(text, &file); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	out := &rules{Custom: map[string]*rule{}, External: map[string]*rule{}}
	for _, part := range []struct {
		kind  string
		specs []ruleSpec
		into  map[string]*rule
	}{{"rules", file.Rules, out.Custom}, {"externalRules", file.ExternalRules, out.External}} {
		kind, into := part.kind, part.into
		for i, spec := range part.specs {
			r, err := compile(spec)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", kind, i, err)
			}
			if kind == "rules" && r.label(podsResource) == "" {
				return nil, fmt.Errorf("%s[%d]: no label maps to pods (only Pods metrics are served)", kind, i)
			}
			if into[r.Metric] != nil {
				return nil, fmt.Errorf("%s[%d]: a second rule for the metric %q", kind, i, r.Metric)
			}
			into[r.Metric] = r
		}
	}
	return out, nil
}

func compile(spec ruleSpec) (*rule, error) {
	found := seriesName.FindStringSubmatch(spec.SeriesQuery)
	if found == nil {
		return nil, fmt.Errorf("seriesQuery %q does not start with a series name", spec.SeriesQuery)
	}
	r := &rule{Series: found[1], Labels: map[string]schema.GroupResource{}}
	for label, res := range spec.Resources.Overrides {
		switch {
		case res.Group != "":
			return nil, fmt.Errorf("label %q: only core pods and namespaces are served", label)
		case res.Resource == "pod" || res.Resource == "pods":
			r.Labels[label] = podsResource
		case res.Resource == "namespace" || res.Resource == "namespaces":
			r.Labels[label] = namespacesResource
		default:
			return nil, fmt.Errorf("label %q: only pods and namespaces are served, not %q", label, res.Resource)
		}
	}
	metric, err := metricName(r.Series, spec.Name.Matches, spec.Name.As)
	if err != nil {
		return nil, err
	}
	r.Metric = metric
	if spec.MetricsQuery == "" {
		return nil, fmt.Errorf("metricsQuery is required")
	}
	r.query, err = template.New(r.Metric).Delims("<<", ">>").Option("missingkey=error").Parse(spec.MetricsQuery)
	if err != nil {
		return nil, fmt.Errorf("metricsQuery: %w", err)
	}
	return r, nil
}

// metricName names a series as prometheus-adapter does: `matches` (default: everything) must
// match it, and `as` (default $0, or $1 with one capture group) is expanded from the match.
func metricName(series, matches, as string) (string, error) {
	if matches == "" {
		matches = ".*"
	}
	re, err := regexp.Compile(matches)
	if err != nil {
		return "", fmt.Errorf("name.matches: %w", err)
	}
	if as == "" {
		switch re.NumSubexp() {
		case 0:
			as = "$0"
		case 1:
			as = "$1"
		default:
			return "", fmt.Errorf("name.as is required with more than one capture group")
		}
	}
	found := re.FindStringSubmatchIndex(series)
	if found == nil {
		return "", fmt.Errorf("name.matches %q does not match the series %q", matches, series)
	}
	return string(re.ExpandString(nil, as, series, found)), nil
}

// label is the Prometheus label that names resource in this rule's series, or "".
func (r *rule) label(resource schema.GroupResource) string {
	for label, res := range r.Labels {
		if res == resource {
			return label
		}
	}
	return ""
}

// podsQuery is the PromQL for the Pods metric of the given pods in one namespace (as
// prometheus-adapter's metricsQuery.Build: `pod` exact for one name, a regexp for several,
// grouped by the pod label).
func (r *rule) podsQuery(namespace string, pods []string) (string, error) {
	if len(pods) == 0 {
		return "", fmt.Errorf("no pods to ask for")
	}
	byName := map[string]string{}
	var matchers []string
	if label := r.label(namespacesResource); label != "" && namespace != "" {
		matchers = append(matchers, fmt.Sprintf("%s=%q", label, namespace))
		byName[label] = namespace
	}
	podLabel := r.label(podsResource)
	value := strings.Join(pods, "|")
	if len(pods) == 1 {
		matchers = append(matchers, fmt.Sprintf("%s=%q", podLabel, value))
	} else {
		matchers = append(matchers, fmt.Sprintf("%s=~%q", podLabel, value))
	}
	byName[podLabel] = value
	return r.render(queryArgs{
		Series:            r.Series,
		LabelMatchers:     strings.Join(matchers, ","),
		LabelValuesByName: byName,
		GroupBy:           podLabel,
		GroupBySlice:      []string{podLabel},
	})
}

// externalQuery is the PromQL for an external metric in one namespace (as prometheus-adapter's
// metricsQuery.BuildExternal: the namespace matcher when the rule maps one, and no group-by).
func (r *rule) externalQuery(namespace string) (string, error) {
	byName := map[string]string{}
	var matchers []string
	if label := r.label(namespacesResource); label != "" && namespace != "" {
		matchers = append(matchers, fmt.Sprintf("%s=%q", label, namespace))
		byName[label] = namespace
	}
	return r.render(queryArgs{
		Series:            r.Series,
		LabelMatchers:     strings.Join(matchers, ","),
		LabelValuesByName: byName,
		GroupBySlice:      []string{},
	})
}

func (r *rule) render(args queryArgs) (string, error) {
	var out strings.Builder
	if err := r.query.Execute(&out, args); err != nil {
		return "", fmt.Errorf("metricsQuery of %s: %w", r.Metric, err)
	}
	return out.String(), nil
}

// names are the metrics of a rule set, sorted.
func names(set map[string]*rule) []string {
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
