package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// a provider on the overlay's rules, three pods (two of them stream's) and a Prometheus that
// answers `answer` to every query and records them
func fakeProvider(t *testing.T, answer string) (*metricsProvider, *[]string) {
	t.Helper()
	var queries []string
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		queries = append(queries, r.URL.Query().Get("query"))
		fmt.Fprint(w, answer)
	}))
	t.Cleanup(prom.Close)

	mapper := apimeta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}})
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, apimeta.RESTScopeNamespace)
	pod := func(name, app string) runtime.Object {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": name, "namespace": "kubescaler", "labels": map[string]any{"app": app}},
		}}
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{{Version: "v1", Resource: "pods"}: "PodList"},
		pod("stream-a", "stream"), pod("stream-b", "stream"), pod("main-a", "main"))
	return &metricsProvider{rules: overlay(t), prom: newPrometheus(prom.URL), mapper: mapper, client: client}, &queries
}

var connections = cmprovider.CustomMetricInfo{
	GroupResource: podsResource, Namespaced: true, Metric: "connections",
}

func TestPodsBySelectorAskForTheSelectedPodsAndAnswerThoseWithValues(t *testing.T) {
	p, queries := fakeProvider(t, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"pod":"stream-b"},"value":[1700000000,"7"]}]}}`)
	list, err := p.GetMetricBySelector(context.Background(), "kubescaler",
		labels.SelectorFromSet(labels.Set{"app": "stream"}), connections, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	want := `sum(kubescaler_stream_connections{namespace="kubescaler",pod=~"stream-a|stream-b"}) by (pod)`
	if len(*queries) != 1 || (*queries)[0] != want {
		t.Errorf("queries %q", *queries)
	}
	if len(list.Items) != 1 {
		t.Fatalf("items %+v", list.Items)
	}
	got := list.Items[0]
	if got.DescribedObject.Kind != "Pod" || got.DescribedObject.Name != "stream-b" ||
		got.DescribedObject.Namespace != "kubescaler" || got.Value.MilliValue() != 7000 ||
		got.Metric.Name != "connections" {
		t.Errorf("item %+v", got)
	}
}

func TestOnePodByName(t *testing.T) {
	p, queries := fakeProvider(t, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"pod":"stream-a"},"value":[1700000000,"2.5"]}]}}`)
	got, err := p.GetMetricByName(context.Background(),
		types.NamespacedName{Namespace: "kubescaler", Name: "stream-a"}, connections, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if (*queries)[0] != `sum(kubescaler_stream_connections{namespace="kubescaler",pod="stream-a"}) by (pod)` {
		t.Errorf("query %q", (*queries)[0])
	}
	if got.Value.String() != "2500m" || got.DescribedObject.Name != "stream-a" {
		t.Errorf("got %+v", got)
	}
}

func TestExternalMetricOfANamespace(t *testing.T) {
	p, queries := fakeProvider(t, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{},"value":[1700000000,"42"]}]}}`)
	list, err := p.GetExternalMetric(context.Background(), "kubescaler", labels.Everything(),
		cmprovider.ExternalMetricInfo{Metric: "kubescaler_lock_commands_pending"})
	if err != nil {
		t.Fatal(err)
	}
	if (*queries)[0] != `max(kubescaler_lock_commands_pending{namespace="kubescaler"}) by ()` {
		t.Errorf("query %q", (*queries)[0])
	}
	if len(list.Items) != 1 || list.Items[0].Value.Value() != 42 ||
		list.Items[0].MetricName != "kubescaler_lock_commands_pending" {
		t.Errorf("items %+v", list.Items)
	}
}

func TestWhatIsNotServedIsNotFoundOrRefused(t *testing.T) {
	p, queries := fakeProvider(t, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	ctx := context.Background()
	_, err := p.GetExternalMetric(ctx, "kubescaler", labels.Everything(), cmprovider.ExternalMetricInfo{Metric: "nope"})
	if !apierrors.IsNotFound(err) {
		t.Errorf("unknown external metric: %v", err)
	}
	_, err = p.GetMetricBySelector(ctx, "kubescaler", labels.SelectorFromSet(labels.Set{"app": "none"}),
		connections, labels.Everything())
	if !apierrors.IsNotFound(err) {
		t.Errorf("no pods selected: %v", err)
	}
	_, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "kubescaler", Name: "stream-a"},
		connections, labels.Everything())
	if !apierrors.IsNotFound(err) {
		t.Errorf("a pod without a value: %v", err)
	}
	_, err = p.GetExternalMetric(ctx, "kubescaler", labels.SelectorFromSet(labels.Set{"a": "b"}),
		cmprovider.ExternalMetricInfo{Metric: "kubescaler_lock_commands_pending"})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("a metric selector: %v", err)
	}
	if len(*queries) != 1 { // only the pod without a value asked Prometheus
		t.Errorf("queries %q", *queries)
	}
}

func TestAPrometheusThatFailsIsServiceUnavailable(t *testing.T) {
	p, _ := fakeProvider(t, `{"status":"error","error":"overloaded"}`)
	_, err := p.GetExternalMetric(context.Background(), "kubescaler", labels.Everything(),
		cmprovider.ExternalMetricInfo{Metric: "kubescaler_lock_commands_pending"})
	if !apierrors.IsServiceUnavailable(err) {
		t.Errorf("got %v", err)
	}
}
