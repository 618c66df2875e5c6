package pipeline

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/config"
	"github.com/deliverhq/deliver/pkg/render"
)

// clusterCaps is what the Helm charts of one run (or one InputsCheck) see
// of the cluster as .Capabilities, as `helm install` and `helm upgrade`
// would: the API server's version and the API versions its discovery
// serves, CRDs included. A chart that renders a ServiceMonitor only where
// monitoring.coreos.com/v1 is served, or picks an Ingress apiVersion by
// the server's version, renders as on the cluster it goes to. They are
// read once, from the session's discovery, when the first Helm app asks;
// a render (nil clusterCaps) sees Helm's offline defaults, as `helm
// template`.
//
// The parts a chart consulted are inputs of its app (render.ReadCluster,
// appDigest): a CRD installed or removed renders again the Helm apps whose
// charts asked for API versions, a new server version those that asked
// for it.
type clusterCaps struct {
	sess *apply.Session

	once sync.Once
	caps *apply.Capabilities
	err  error

	// helmOnce makes cluster, what every Helm app of the run renders
	// for, once.
	helmOnce sync.Once
	cluster  *render.Cluster
	helmErr  error

	// versions, when not nil, remembers objectVersion's answers by
	// identity and object: an InputsCheck judges every app at one point
	// in time, so a thousand apps reading one ConfigMap cost one read,
	// not a thousand. A run has none: its own applies change the
	// objects it reads between two asks.
	versionsMu sync.Mutex
	versions   map[[2]string]string

	// fresh, in an InputsCheck, reads the capabilities from a discovery
	// of the last seconds (apply.Session.FreshCapabilities), not one up
	// to a minute old: the check is what notices a CRD someone else
	// installed since an app's last run.
	fresh bool
}

// newClusterCaps returns the capabilities of sess; nil when there is no
// session (render).
func newClusterCaps(sess *apply.Session) *clusterCaps {
	if sess == nil {
		return nil
	}
	return &clusterCaps{sess: sess}
}

func (c *clusterCaps) get(ctx context.Context) (*apply.Capabilities, error) {
	c.once.Do(func() {
		if c.fresh {
			c.caps, c.err = c.sess.FreshCapabilities(ctx)
		} else {
			c.caps, c.err = c.sess.Capabilities(ctx)
		}
		if c.err != nil {
			c.err = fmt.Errorf("cluster capabilities: %w", c.err)
		}
	})
	return c.caps, c.err
}

// helm returns the cluster Helm renders for; nil without a session.
func (c *clusterCaps) helm(ctx context.Context) (*render.Cluster, error) {
	if c == nil {
		return nil, nil
	}
	c.helmOnce.Do(func() {
		var caps *apply.Capabilities
		if caps, c.helmErr = c.get(ctx); c.helmErr == nil {
			c.cluster, c.helmErr = render.NewCluster(caps.Version, caps.Groups, caps.Resources)
		}
	})
	return c.cluster, c.helmErr
}

// objectVersion returns the version of the object obj
// ("Kind/namespace/name", a ConfigMap or Secret a post-build of app a
// read: render.ReadObject) as the render records it: its uid and
// resourceVersion, or absent. Only its metadata is read, as app a's
// identity, as the post-build read it.
func (c *clusterCaps) objectVersion(ctx context.Context, a config.ResolvedApp, obj string) (string, error) {
	if c == nil {
		return "", fmt.Errorf("object %s: no cluster", obj)
	}
	o, err := parseVarsObject(obj)
	if err != nil {
		return "", err
	}
	user := apply.ServiceAccountUser(a.Namespace, a.ServiceAccountName)
	key := [2]string{user, obj}
	c.versionsMu.Lock()
	v, ok := c.versions[key]
	c.versionsMu.Unlock()
	if ok {
		return v, nil
	}
	meta, _, err := c.sess.ReadersAs(user)
	if err != nil {
		return "", err
	}
	m, err := meta.Resource(o.resource()).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		v = render.ObjectAbsent
	case err != nil:
		return "", fmt.Errorf("object %s: %w", obj, err)
	default:
		v = render.ObjectVersion(string(m.GetUID()), m.GetResourceVersion())
	}
	c.versionsMu.Lock()
	if c.versions != nil {
		c.versions[key] = v
	}
	c.versionsMu.Unlock()
	return v, nil
}

// part returns what app a's inputs hold of one part of the cluster
// (render.ReadCluster: the path is the part), for appDigest: the server's
// version as a chart sees it, or the digest of its API versions.
func (c *clusterCaps) part(ctx context.Context, name string) (string, error) {
	if c == nil {
		return "", fmt.Errorf("cluster capabilities: %s: no cluster", name)
	}
	caps, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	switch name {
	case render.CapKubeVersion:
		v := caps.Version
		return v.GitVersion + " " + v.Major + " " + v.Minor, nil
	case render.CapAPIVersions:
		return caps.APIDigest, nil
	}
	return "", fmt.Errorf("cluster capabilities: unknown part %q", name)
}
