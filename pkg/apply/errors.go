package apply

import (
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrImmutable is wrapped by errors about a change to an immutable field
// that deliver was not allowed to fix by re-creating the object.
var ErrImmutable = errors.New("immutable field changed")

// ErrDelivered is Apply's error with PlanOptions.UnlessDelivered when the
// app's inventory already records a successful run of the revision.
var ErrDelivered = errors.New("already delivered at this revision")

func isImmutable(err error) bool {
	return apierrors.IsInvalid(err) && strings.Contains(err.Error(), "immutable")
}

// explain adds what the user can do to errors they can act on.
func explain(err error, c *Change) error {
	if isImmutable(err) {
		return fmt.Errorf("%w: %v; set the annotation %s: \"true\" on the object or use --recreate to delete and re-create it", ErrImmutable, err, AnnotationRecreate)
	}
	return err
}
