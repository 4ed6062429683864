// Command netpol runs kube-router's network-policy controller alone (iptables and ipset in the
// network namespace it starts in), the way k3s embeds it: no routing, no service proxy.
package main

import (
	"flag"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the node's credentials")
	node := flag.String("hostname-override", "", "the Node object's name")
	serviceCIDR := flag.String("service-cluster-ip-range", "10.96.0.0/12", "Services' cluster IP range")
	nodePorts := flag.String("service-node-port-range", "30000-32767", "NodePort range")
	syncPeriod := flag.Duration("iptables-sync-period", 5*time.Minute, "full resync period")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *node == "" {
		klog.Exit("--kubeconfig and --hostname-override are required")
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Exitf("kubeconfig %s: %v", *kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		klog.Exitf("client: %v", err)
	}

	config := options.NewKubeRouterConfig()
	config.ClusterIPCIDRs = []string{*serviceCIDR}
	config.NodePortRange = *nodePorts
	config.EnableIPv4 = true
	config.EnableIPv6 = false
	config.HostnameOverride = *node
	config.RunFirewall = true
	config.RunRouter = false
	config.RunServiceProxy = false
	config.MetricsEnabled = false
	config.HealthPort = 0
	config.IPTablesSyncPeriod = *syncPeriod

	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-signals; close(stop) }()

	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stop)
	factory.WaitForCacheSync(stop)

	iptablesHandlers, ipsetHandlers, err := netpol.NewIPTablesHandlers(config)
	if err != nil {
		klog.Exitf("iptables/ipset: %v", err)
	}
	var wg sync.WaitGroup
	health := make(chan *healthcheck.ControllerHeartbeat, 10)
	hc, _ := healthcheck.NewHealthController(config)
	hc.SetAlive()
	wg.Add(1)
	go hc.RunCheck(health, stop, &wg)

	npc, err := netpol.NewNetworkPolicyController(client, config, pods, policies, namespaces,
		&sync.Mutex{}, nil, iptablesHandlers, ipsetHandlers)
	if err != nil {
		klog.Exitf("network policy controller: %v", err)
	}
	if _, err := pods.AddEventHandler(npc.PodEventHandler); err != nil {
		klog.Exit(err)
	}
	if _, err := namespaces.AddEventHandler(npc.NamespaceEventHandler); err != nil {
		klog.Exit(err)
	}
	if _, err := policies.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
		klog.Exit(err)
	}
	wg.Add(1)
	go npc.Run(health, stop, &wg)
	<-stop
	wg.Wait()
}
