package apply

import (
	"context"
	"encoding/json"
	"maps"
	"sync"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// aggregatedList is the kind of an aggregated discovery document.
var aggregatedList = schema.GroupVersionKind{Group: "apidiscovery.k8s.io", Version: "v2", Kind: "APIGroupDiscoveryList"}

// parallelDiscovery is client-go's discovery client with one change: the
// two documents of aggregated discovery, /api and /apis, are fetched at the
// same time instead of one after the other. Discovery comes before the
// first list of every run, so that is one round trip less on the critical
// path of every process (10-13 ms against a busy local API server). When
// either answer is anything but an aggregated discovery v2 document, or
// fails, client-go's own sequential fetch runs instead, with its handling
// of older servers and of errors. (An API server before Kubernetes 1.30
// serves no v2 document: it is then asked for the two documents twice,
// a few milliseconds once per process.)
type parallelDiscovery struct {
	*discovery.DiscoveryClient
}

// GroupsAndMaybeResources implements discovery.AggregatedDiscoveryInterface.
func (d parallelDiscovery) GroupsAndMaybeResources() (*metav1.APIGroupList, map[schema.GroupVersion]*metav1.APIResourceList, map[schema.GroupVersion]error, error) {
	return d.GroupsAndMaybeResourcesWithContext(context.Background())
}

// GroupsAndMaybeResourcesWithContext implements
// discovery.AggregatedDiscoveryInterfaceWithContext, which client-go's
// memory cache prefers.
func (d parallelDiscovery) GroupsAndMaybeResourcesWithContext(ctx context.Context) (*metav1.APIGroupList, map[schema.GroupVersion]*metav1.APIResourceList, map[schema.GroupVersion]error, error) {
	var (
		docs [2]*apidiscoveryv2.APIGroupDiscoveryList
		wg   sync.WaitGroup
	)
	for i, path := range []string{"/api", "/apis"} {
		wg.Go(func() { docs[i] = d.aggregated(ctx, path) })
	}
	wg.Wait()
	if docs[0] == nil || docs[1] == nil {
		return d.DiscoveryClient.GroupsAndMaybeResourcesWithContext(ctx)
	}
	// As client-go merges them: the legacy group first.
	groups, resources, failed := discovery.SplitGroupsAndResources(*docs[0])
	apiGroups, apiResources, apiFailed := discovery.SplitGroupsAndResources(*docs[1])
	groups.Groups = append(groups.Groups, apiGroups.Groups...)
	maps.Copy(resources, apiResources)
	maps.Copy(failed, apiFailed)
	return groups, resources, failed, nil
}

// aggregated returns the aggregated discovery document at path, or nil
// when the server answers anything else.
func (d parallelDiscovery) aggregated(ctx context.Context, path string) *apidiscoveryv2.APIGroupDiscoveryList {
	var contentType string
	body, err := d.RESTClient().Get().AbsPath(path).
		SetHeader("Accept", discovery.AcceptV2+","+discovery.AcceptV1).
		Do(ctx).ContentType(&contentType).Raw()
	if err != nil {
		return nil
	}
	if ok, _ := discovery.ContentTypeIsGVK(contentType, aggregatedList); !ok {
		return nil
	}
	var list apidiscoveryv2.APIGroupDiscoveryList
	if json.Unmarshal(body, &list) != nil {
		return nil
	}
	return &list
}
