package apply

import (
	"fmt"

	"github.com/deliverhq/deliver/pkg/object"
)

// ObjectError is a failure about one object before anything was written
// (its dry run), so that a caller can name the object without parsing the
// message: the reconciler's notifications (pkg/notify) say which object a
// delivery failed on.
type ObjectError struct {
	// ID and Origin are the object and where it came from.
	ID     object.ID
	Origin object.Origin
	// Step is what failed: "dry-run".
	Step string
	// Err is the API server's answer.
	Err error
}

// Error names the object, its origin and the step, as
// "Kind/namespace/name (origin): dry-run: cause".
func (e *ObjectError) Error() string {
	return fmt.Sprintf("%s (%s): %s: %v", e.ID, e.Origin, e.Step, e.Err)
}

// Unwrap returns the cause, for apierrors.IsInvalid and the like.
func (e *ObjectError) Unwrap() error { return e.Err }
