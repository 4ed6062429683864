package main

// The metrics provider of sigs.k8s.io/custom-metrics-apiserver: each request becomes one
// PromQL query rendered from its rule, and the vector it returns becomes metric values.

import (
	"context"
	"math"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider/helpers"
)

type metricsProvider struct {
	rules  *rules
	prom   *prometheus
	mapper apimeta.RESTMapper
	client dynamic.Interface
}

var _ cmprovider.MetricsProvider = (*metricsProvider)(nil)

// podsRule is the rule serving info, which must be a namespaced Pods metric.
func (p *metricsProvider) podsRule(info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*rule, cmprovider.CustomMetricInfo, error) {
	if !metricSelector.Empty() {
		return nil, info, apierrors.NewBadRequest("metric label selectors are not supported by this adapter")
	}
	info, _, err := info.Normalized(p.mapper)
	if err != nil {
		return nil, info, err
	}
	r := p.rules.Custom[info.Metric]
	if r == nil || info.GroupResource != podsResource || !info.Namespaced {
		return nil, info, cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	return r, info, nil
}

func (p *metricsProvider) GetMetricByName(ctx context.Context, name types.NamespacedName, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	r, info, err := p.podsRule(info, metricSelector)
	if err != nil {
		return nil, err
	}
	samples, err := p.ask(ctx, func() (string, error) { return r.podsQuery(name.Namespace, []string{name.Name}) })
	if err != nil {
		return nil, err
	}
	if len(samples) == 0 {
		return nil, cmprovider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	return p.podValue(name, info, samples[0])
}

func (p *metricsProvider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	r, info, err := p.podsRule(info, metricSelector)
	if err != nil {
		return nil, err
	}
	pods, err := helpers.ListObjectNames(p.mapper, p.client, namespace, selector, info)
	if err != nil {
		return nil, err
	}
	if len(pods) == 0 {
		return nil, cmprovider.NewMetricNotFoundForSelectorError(info.GroupResource, info.Metric, "", selector)
	}
	samples, err := p.ask(ctx, func() (string, error) { return r.podsQuery(namespace, pods) })
	if err != nil {
		return nil, err
	}
	byPod := map[string]sample{}
	for _, s := range samples {
		byPod[s.Labels[r.label(podsResource)]] = s
	}
	list := &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{}}
	for _, pod := range pods { // the pods Prometheus has no value for are left out, as upstream
		if s, ok := byPod[pod]; ok {
			value, err := p.podValue(types.NamespacedName{Namespace: namespace, Name: pod}, info, s)
			if err != nil {
				return nil, err
			}
			list.Items = append(list.Items, *value)
		}
	}
	return list, nil
}

func (p *metricsProvider) ListAllMetrics() []cmprovider.CustomMetricInfo {
	var out []cmprovider.CustomMetricInfo
	for _, name := range names(p.rules.Custom) {
		out = append(out, cmprovider.CustomMetricInfo{GroupResource: podsResource, Namespaced: true, Metric: name})
	}
	return out
}

func (p *metricsProvider) GetExternalMetric(ctx context.Context, namespace string, metricSelector labels.Selector, info cmprovider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	if !metricSelector.Empty() {
		return nil, apierrors.NewBadRequest("metric label selectors are not supported by this adapter")
	}
	r := p.rules.External[info.Metric]
	if r == nil {
		return nil, cmprovider.NewMetricNotFoundError(namespacesResource, info.Metric)
	}
	samples, err := p.ask(ctx, func() (string, error) { return r.externalQuery(namespace) })
	if err != nil {
		return nil, err
	}
	list := &external_metrics.ExternalMetricValueList{Items: []external_metrics.ExternalMetricValue{}}
	for _, s := range samples {
		delete(s.Labels, "__name__")
		list.Items = append(list.Items, external_metrics.ExternalMetricValue{
			MetricName:   info.Metric,
			MetricLabels: s.Labels,
			Timestamp:    metav1.NewTime(s.Time),
			Value:        quantity(s.Value),
		})
	}
	return list, nil
}

func (p *metricsProvider) ListAllExternalMetrics() []cmprovider.ExternalMetricInfo {
	var out []cmprovider.ExternalMetricInfo
	for _, name := range names(p.rules.External) {
		out = append(out, cmprovider.ExternalMetricInfo{Metric: name})
	}
	return out
}

// ask renders a query and runs it; a Prometheus that does not answer is a 503 saying so.
func (p *metricsProvider) ask(ctx context.Context, render func() (string, error)) ([]sample, error) {
	promql, err := render()
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	samples, err := p.prom.query(ctx, promql)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(err.Error())
	}
	return samples, nil
}

func (p *metricsProvider) podValue(name types.NamespacedName, info cmprovider.CustomMetricInfo, s sample) (*custom_metrics.MetricValue, error) {
	ref, err := helpers.ReferenceFor(p.mapper, name, info)
	if err != nil {
		return nil, err
	}
	return &custom_metrics.MetricValue{
		DescribedObject: ref,
		Metric:          custom_metrics.MetricIdentifier{Name: info.Metric},
		Timestamp:       metav1.NewTime(s.Time),
		Value:           quantity(s.Value),
	}, nil
}

// quantity is a sample's value to the thousandth, NaN as 0 (as prometheus-adapter does).
func quantity(v float64) resource.Quantity {
	if math.IsNaN(v) {
		return *resource.NewQuantity(0, resource.DecimalSI)
	}
	return *resource.NewMilliQuantity(int64(v*1000), resource.DecimalSI)
}
