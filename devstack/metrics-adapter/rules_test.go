package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// the classic overlay's own rule file: what the adapter is run with
const overlayRules = "../../manifests/components/prometheus-adapter/adapter-rules.yaml"

func overlay(t *testing.T) *rules {
	t.Helper()
	text, err := os.ReadFile(overlayRules)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseRules(text)
	if err != nil {
		t.Fatalf("the overlay's rules do not load: %v", err)
	}
	return r
}

func TestOverlayRulesServeWhatTheHPAsAskFor(t *testing.T) {
	r := overlay(t)
	if got := strings.Join(names(r.Custom), ","); got != "connections" {
		t.Errorf("custom metrics: %s", got)
	}
	if got := strings.Join(names(r.External), ","); got != "kubescaler_lock_commands_pending" {
		t.Errorf("external metrics: %s", got)
	}
}

func TestPodsQueryOfSeveralPodsIsARegexpGroupedByPod(t *testing.T) {
	got, err := overlay(t).Custom["connections"].podsQuery("kubescaler", []string{"stream-a", "stream-b"})
	if err != nil {
		t.Fatal(err)
	}
	want := `sum(kubescaler_stream_connections{namespace="kubescaler",pod=~"stream-a|stream-b"}) by (pod)`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestPodsQueryOfOnePodIsAnExactMatch(t *testing.T) {
	got, err := overlay(t).Custom["connections"].podsQuery("kubescaler", []string{"stream-a"})
	if err != nil {
		t.Fatal(err)
	}
	want := `sum(kubescaler_stream_connections{namespace="kubescaler",pod="stream-a"}) by (pod)`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestExternalQueryMatchesTheNamespaceAndGroupsByNothing(t *testing.T) {
	got, err := overlay(t).External["kubescaler_lock_commands_pending"].externalQuery("kubescaler")
	if err != nil {
		t.Fatal(err)
	}
	want := `max(kubescaler_lock_commands_pending{namespace="kubescaler"}) by ()`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestNameAsDefaultsToTheOneCaptureGroup(t *testing.T) {
	got, err := metricName("http_requests_total", "^(.*)_total$", "")
	if err != nil || got != "http_requests" {
		t.Errorf("got %q, %v", got, err)
	}
	got, err = metricName("x_seconds", "^x_(.*)$", "y_${1}")
	if err != nil || got != "y_seconds" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestUnsupportedFeaturesStopTheAdapterInsteadOfBeingIgnored(t *testing.T) {
	for name, text := range map[string]string{
		"seriesFilters":    "rules:\n- seriesQuery: a{pod!=''}\n  seriesFilters: [{is: x}]\n  resources: {overrides: {pod: {resource: pod}}}\n  metricsQuery: <<.Series>>\n",
		"template":         "rules:\n- seriesQuery: a\n  resources: {template: <<.Resource>>}\n  metricsQuery: <<.Series>>\n",
		"resourceRules":    "resourceRules: {cpu: {}}\n",
		"no pod label":     "rules:\n- seriesQuery: a\n  resources: {overrides: {namespace: {resource: namespace}}}\n  metricsQuery: <<.Series>>\n",
		"a deployment":     "externalRules:\n- seriesQuery: a\n  resources: {overrides: {d: {group: apps, resource: deployment}}}\n  metricsQuery: <<.Series>>\n",
		"a name selector":  "externalRules:\n- seriesQuery: '{__name__=~\"a.*\"}'\n  metricsQuery: <<.Series>>\n",
		"unknown argument": "externalRules:\n- seriesQuery: a\n  metricsQuery: <<.Nope>>\n",
	} {
		r, err := parseRules([]byte(text))
		if err == nil && name == "unknown argument" {
			_, err = r.External["a"].externalQuery("ns")
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestPrometheusVectorBecomesSamples(t *testing.T) {
	body := `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"pod":"stream-a"},"value":[1700000000.5,"3"]},
		{"metric":{"pod":"stream-b"},"value":[1700000000.5,"NaN"]}]}}`
	got, err := parseVector(200, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Labels["pod"] != "stream-a" || got[0].Value != 3 || !math.IsNaN(got[1].Value) {
		t.Errorf("got %+v", got)
	}
	if !got[0].Time.Equal(time.Unix(1700000000, 5e8)) {
		t.Errorf("time %v", got[0].Time)
	}
	if q := quantity(got[1].Value); q.String() != "0" {
		t.Errorf("NaN became %s", q.String())
	}
	if q := quantity(2.5); q.String() != "2500m" {
		t.Errorf("2.5 became %s", q.String())
	}
}

func TestPrometheusErrorsSayWhatPrometheusSaid(t *testing.T) {
	_, err := parseVector(400, []byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
	if err == nil || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("got %v", err)
	}
	_, err = parseVector(200, []byte(`{"status":"success","data":{"resultType":"matrix","result":[]}}`))
	if err == nil {
		t.Error("a matrix was accepted")
	}
}
