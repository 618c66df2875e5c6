package testenv

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// ServiceAccount creates the ServiceAccount name in ns, for an app to
// impersonate, and returns its user name.
func (c *Cluster) ServiceAccount(t testing.TB, ns, name string) string {
	t.Helper()
	_, err := c.Client().CoreV1().ServiceAccounts(ns).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("testenv: create ServiceAccount %s/%s: %v", ns, name, err)
	}
	return "system:serviceaccount:" + ns + ":" + name
}

// Grant lets the ServiceAccount saNS/sa use verbs on resources (of the
// core, apps and batch groups) in ns, with a Role and a RoleBinding named
// after it, as a cluster admin gives a tenant. It returns once the API
// server's authorizer allows the first verb on the first resource.
func (c *Cluster) Grant(t testing.TB, ns, saNS, sa string, verbs []string, resources ...string) {
	t.Helper()
	ctx := context.Background()
	cs := c.Client()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"", "apps", "batch"}, Resources: resources, Verbs: verbs}},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testenv: create Role %s/%s: %v", ns, sa, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: saNS}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testenv: create RoleBinding %s/%s: %v", ns, sa, err)
	}
	c.WaitAllowed(t, "system:serviceaccount:"+saNS+":"+sa, verbs[0], resources[0], ns, true)
}

// WaitAllowed polls the API server's authorizer until user may (or, with
// want false, may no longer) use verb on resource (of the core group) in
// ns: RBAC changes reach the authorizer through an informer, a moment
// after they were written.
func (c *Cluster) WaitAllowed(t testing.TB, user, verb, resource, ns string, want bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               user,
			Groups:             []string{"system:serviceaccounts", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Namespace: ns},
		}}
		res, err := c.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return res.Status.Allowed == want, nil
	})
	if err != nil {
		t.Fatalf("testenv: %s %s %s in %s: allowed never became %v: %v", user, verb, resource, ns, want, err)
	}
}
