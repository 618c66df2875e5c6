package notify

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/deliverhq/deliver/pkg/config"
)

// gitlabStatus is the body of POST /projects/:id/statuses/:sha.
type gitlabStatus struct {
	State       string `json:"state"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// gitlab builds a commit status on GitLab: state running, success or
// failed, named like GitHub's context. The project is its path (escaped
// into one path segment, as the API wants) or numeric id.
func (n *Notifier) gitlab(ctx context.Context, p config.Notification, e Event, token string) (*http.Request, error) {
	project, err := repository(p, e)
	if err != nil {
		return nil, err
	}
	state := map[Result]string{Pending: "running", Succeeded: "success", Failed: "failed"}[e.Result]
	address := strings.TrimSuffix(cmp.Or(p.Address, config.DefaultGitLabAddress), "/") +
		"/api/v4/projects/" + url.PathEscape(project) + "/statuses/" + e.Revision
	description, ok, err := n.message(p, e, maxDescription)
	if err != nil {
		return nil, err
	}
	if !ok {
		description = truncate(n.describe(e), maxDescription)
	}
	req, _, err := n.newJSONRequest(ctx, address, gitlabStatus{
		State:       state,
		Name:        statusContext(e),
		Description: description,
	})
	if err != nil {
		return nil, err
	}
	req.Header.Set("PRIVATE-TOKEN", token)
	return req, nil
}
