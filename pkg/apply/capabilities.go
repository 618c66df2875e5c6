package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/restmapper"
)

// Capabilities is what a chart's .Capabilities are made of in `helm
// install` and `helm upgrade` (and Flux's helm-controller): the API
// server's version as it reports it, and the groups and resources its
// discovery serves (CRDs included). Helm asks the cluster anew for each
// install; a Session keeps them with its discovery (see sharedMapper), so
// every app of a run sees the same, and they change when discovery does:
// after a run creates CRDs, when a lookup misses, and at least once a
// minute.
type Capabilities struct {
	// Version is the API server's /version.
	Version version.Info
	// Groups and Resources are discovery's answer, as
	// discovery.ServerGroupsAndResources returns it (what Helm's
	// action.GetVersionSet reads).
	Groups    []*metav1.APIGroup
	Resources []*metav1.APIResourceList
	// APIDigest changes when any group/version or group/version/kind
	// discovery serves does (verbs, short names and the like do not
	// count): what an app's recorded inputs hold of the API versions.
	APIDigest string
}

// Capabilities returns the cluster's capabilities from the session's
// current discovery, asking the API server for its version once per
// discovery.
func (s *Session) Capabilities(ctx context.Context) (*Capabilities, error) {
	return s.capabilitiesWithin(ctx, s.mapper.maxAge)
}

// FreshCapabilities is Capabilities from a discovery at most 10 seconds
// old (the age at which a lookup that misses discovers again): what a
// check of recorded inputs reads, so that an API version served since,
// by a CRD someone else installed, is a change the check sees, not one
// the next minute's discovery brings. Checks close together share one
// discovery.
func (s *Session) FreshCapabilities(ctx context.Context) (*Capabilities, error) {
	return s.capabilitiesWithin(ctx, s.mapper.missAge)
}

// capabilitiesWithin returns the capabilities of a discovery younger than
// age.
func (s *Session) capabilitiesWithin(ctx context.Context, age time.Duration) (*Capabilities, error) {
	snap, err := s.mapper.snapshotWithin(age)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return snap.capabilities(ctx, s.mapper.disc)
}

// capabilities returns the snapshot's capabilities, asking disc for the
// server's version the first time; a failed ask is tried again by the
// next call.
func (s *mapperSnapshot) capabilities(ctx context.Context, disc discovery.DiscoveryInterface) (*Capabilities, error) {
	s.capsMu.Lock()
	defer s.capsMu.Unlock()
	if s.caps != nil {
		return s.caps, nil
	}
	v, err := discovery.ToServerVersionInterfaceWithContext(disc).ServerVersionWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	c := &Capabilities{Version: *v}
	c.Groups, c.Resources = discovered(s.groups)
	c.APIDigest = apiDigest(c)
	s.caps = c
	return c, nil
}

// discovered turns the groups a RESTMapper was built from back into
// discovery's answer: restmapper.GetAPIGroupResources keeps every group
// whole and each version's resource list as served, so nothing is lost.
func discovered(groups []*restmapper.APIGroupResources) ([]*metav1.APIGroup, []*metav1.APIResourceList) {
	var (
		gs []*metav1.APIGroup
		rs []*metav1.APIResourceList
	)
	for _, g := range groups {
		gs = append(gs, &g.Group)
		for _, v := range g.Group.Versions {
			if res, ok := g.VersionedResources[v.Version]; ok {
				rs = append(rs, &metav1.APIResourceList{GroupVersion: v.GroupVersion, APIResources: res})
			}
		}
	}
	return gs, rs
}

// apiDigest hashes every group/version and group/version/kind of c,
// sorted: what a chart can see of its API.
func apiDigest(c *Capabilities) string {
	var seen []string
	for _, g := range c.Groups {
		for _, v := range g.Versions {
			seen = append(seen, v.GroupVersion)
		}
	}
	for _, r := range c.Resources {
		for _, res := range r.APIResources {
			seen = append(seen, r.GroupVersion+"/"+res.Kind)
		}
	}
	slices.Sort(seen)
	seen = slices.Compact(seen)
	sum := sha256.Sum256([]byte(strings.Join(seen, "\n")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// capsState is the part of a mapperSnapshot that Capabilities fills in.
type capsState struct {
	capsMu sync.Mutex
	caps   *Capabilities
}
