// Command kstatus prints how Flux's kstatus library (github.com/fluxcd/cli-utils) reads live
// objects: one JSON line per object with its computed status (InProgress, Current, Failed, ...).
//
//	kstatus -kubeconfig FILE -namespace NS RESOURCE...
//
// RESOURCE is a plural resource of homeostat.dev/v1alpha1 (remediationpolicies, remediations),
// optionally with a name (remediations/web-runaway-1). The e2e suite runs it against the
// apiserver of the test cluster.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

type line struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	namespace := flag.String("namespace", "default", "namespace of the objects")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: kstatus -kubeconfig FILE -namespace NS RESOURCE[/NAME]...")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: reading kubeconfig %q: %v\n", *kubeconfig, err)
		os.Exit(1)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: building a client: %v\n", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	ctx := context.Background()
	for _, arg := range flag.Args() {
		resource, name, _ := strings.Cut(arg, "/")
		gvr := schema.GroupVersionResource{Group: "homeostat.dev", Version: "v1alpha1", Resource: resource}
		api := client.Resource(gvr).Namespace(*namespace)
		var objs []unstructured.Unstructured
		if name != "" {
			o, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				fmt.Fprintf(os.Stderr, "kstatus: getting %s/%s in %s: %v\n", resource, name, *namespace, err)
				os.Exit(1)
			}
			objs = append(objs, *o)
		} else {
			l, err := api.List(ctx, metav1.ListOptions{})
			if err != nil {
				fmt.Fprintf(os.Stderr, "kstatus: listing %s in %s: %v\n", resource, *namespace, err)
				os.Exit(1)
			}
			objs = l.Items
		}
		for i := range objs {
			o := &objs[i]
			res, err := status.Compute(o)
			if err != nil {
				fmt.Fprintf(os.Stderr, "kstatus: computing the status of %s/%s: %v\n", o.GetKind(), o.GetName(), err)
				os.Exit(1)
			}
			if err := out.Encode(line{Kind: o.GetKind(), Name: o.GetName(), Status: res.Status.String(), Message: res.Message}); err != nil {
				fmt.Fprintf(os.Stderr, "kstatus: writing: %v\n", err)
				os.Exit(1)
			}
		}
	}
}
