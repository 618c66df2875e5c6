package pin

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Who returns the user cfg authenticates as, in the API server's own
// words (a SelfSubjectReview, what kubectl auth whoami asks): the name a
// certificate, a token or an OIDC login maps to, or the impersonated
// user, rather than what the kubeconfig claims. It is what a pin records
// as who set it.
func Who(ctx context.Context, cfg *rest.Config) (string, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", fmt.Errorf("who am i: %w", err)
	}
	r, err := kc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("who am i: self subject review: %w", err)
	}
	if r.Status.UserInfo.Username == "" {
		return "", fmt.Errorf("who am i: the API server names no user")
	}
	return r.Status.UserInfo.Username, nil
}
