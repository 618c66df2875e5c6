package apply

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/deliverhq/deliver/pkg/object"
)

// ForbiddenError is a request about an app's object that the
// ServiceAccount the app impersonates (Options.ServiceAccountName) may
// not make. It names who, what and on which object, so that the fix (a
// Role or RoleBinding in the app's namespace) is plain from the message;
// the API server's own message, which it wraps, says which rule is
// missing.
type ForbiddenError struct {
	// Verb is what deliver tried: "apply", "dry-run apply", "delete",
	// "get", "list", "create", "watch".
	Verb string
	// Object is the object, Kind/namespace/name, or for a list the
	// resource and namespace.
	Object string
	// User is the impersonated user, system:serviceaccount:<ns>:<name>.
	User string
	// Err is the API server's answer.
	Err error
}

// Error implements error.
func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s %s as %s: %v", e.Verb, e.Object, e.User, e.Err)
}

// Unwrap returns the API server's error, for apierrors.IsForbidden.
func (e *ForbiddenError) Unwrap() error { return e.Err }

// describe names objs for a message: the first, and how many more.
func describe(objs []*object.Object) string {
	switch len(objs) {
	case 0:
		return "no objects"
	case 1:
		return objs[0].ID().String()
	}
	return fmt.Sprintf("%s and %d more", objs[0].ID(), len(objs)-1)
}

// denied returns err as a ForbiddenError when the app impersonates a
// ServiceAccount and the API server refused it; err unchanged otherwise.
func (m *Manager) denied(err error, verb, object string) error {
	user := m.impersonated()
	if err == nil || user == "" || !apierrors.IsForbidden(err) {
		return err
	}
	return &ForbiddenError{Verb: verb, Object: object, User: user, Err: err}
}
