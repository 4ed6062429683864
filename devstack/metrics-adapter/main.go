// Command metrics-adapter is test tooling, not product: a minimal stand-in for
// prometheus-adapter (whose Go module the module proxy here does not serve) built on the
// library prometheus-adapter is built on, sigs.k8s.io/custom-metrics-apiserver. It lets the
// classic overlay's plain HPAs (manifests/components/prometheus-adapter/hpas.yaml) run
// unchanged on the local cluster, configured from that component's own adapter-rules.yaml.
//
// It serves custom.metrics.k8s.io (every version the library serves: v1beta2 and v1beta1)
// and external.metrics.k8s.io v1beta1, answering each request with one instant query to
// Prometheus' HTTP API (--prometheus-url) rendered from the rule's metricsQuery, a Go
// template with prometheus-adapter's << >> delimiters and arguments (.Series,
// .LabelMatchers, .GroupBy, .LabelValuesByName, .GroupBySlice).
//
// Served, with prometheus-adapter's semantics: `rules` giving Pods metrics (by label selector,
// the HPA's way, and by pod name) and `externalRules` giving namespaced external metrics;
// resources.overrides mapping labels to pods and namespaces; name.matches/name.as.
//
// Deliberately left out (the rules file is read strictly, so using one stops the adapter at
// start-up rather than being half understood):
//   - series discovery: seriesQuery is not run; the series is the name it starts with, and
//     each rule serves exactly one metric (so name.as cannot fan out over many series);
//   - seriesFilters, resources.template, resources.namespaced, resourceRules (the resource
//     metrics API), metricsQuery defaults;
//   - metrics of any object but pods (namespaces, deployments, ...), root-scoped metrics;
//   - metric label selectors (an HPA's metric.selector): refused with 400;
//   - the rules being re-read on change: a new ConfigMap needs a restart.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
)

type adapter struct {
	basecmd.AdapterBase
	prometheusURL string
	rulesFile     string
}

func main() {
	logs.InitLogs()
	defer logs.FlushLogs()

	cmd := &adapter{}
	cmd.Name = "kubescaler-metrics-adapter"
	cmd.Flags().StringVar(&cmd.prometheusURL, "prometheus-url", "http://prometheus.kubescaler.svc:9090",
		"Prometheus' base URL (its HTTP API is under /api/v1)")
	cmd.Flags().StringVar(&cmd.rulesFile, "config", "/etc/adapter/config.yaml",
		"prometheus-adapter's rules file (rules: and externalRules:)")
	logs.AddFlags(cmd.Flags())
	if err := cmd.Flags().Parse(os.Args); err != nil {
		klog.Fatalf("flags: %v", err)
	}

	rules, err := loadRules(cmd.rulesFile)
	if err != nil {
		klog.Fatalf("%s: %v", cmd.rulesFile, err)
	}
	mapper, err := cmd.RESTMapper()
	if err != nil {
		klog.Fatalf("REST mapper: %v", err)
	}
	client, err := cmd.DynamicClient()
	if err != nil {
		klog.Fatalf("dynamic client: %v", err)
	}
	p := &metricsProvider{rules: rules, prom: newPrometheus(cmd.prometheusURL), mapper: mapper, client: client}
	cmd.WithCustomMetrics(p)
	cmd.WithExternalMetrics(p)

	klog.Infof("serving pods metrics %v and external metrics %v from %s",
		names(rules.Custom), names(rules.External), cmd.prometheusURL)
	if err := cmd.Run(genericapiserver.SetupSignalContext()); err != nil {
		klog.Fatalf("adapter: %v", err)
	}
}
