package notify

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/deliverhq/deliver/pkg/config"
)

// maxDescription is the longest description GitHub accepts on a commit
// status.
const maxDescription = 140

// githubStatus is the body of POST /repos/{owner}/{repo}/statuses/{sha}.
type githubStatus struct {
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description"`
}

// github builds a commit status on GitHub (or GitHub Enterprise, with
// address https://HOST/api/v3): state pending, success or failure, one
// context per environment and app.
func (n *Notifier) github(ctx context.Context, p config.Notification, e Event, token string) (*http.Request, error) {
	repo, err := repository(p, e)
	if err != nil {
		return nil, err
	}
	if strings.Count(repo, "/") != 1 {
		return nil, permanent(errors.New("repository: want owner/name"))
	}
	state := map[Result]string{Pending: "pending", Succeeded: "success", Failed: "failure"}[e.Result]
	address := strings.TrimSuffix(cmp.Or(p.Address, config.DefaultGitHubAddress), "/") +
		"/repos/" + repo + "/statuses/" + e.Revision
	description, ok, err := n.message(p, e, maxDescription)
	if err != nil {
		return nil, err
	}
	if !ok {
		description = truncate(n.describe(e), maxDescription)
	}
	req, _, err := n.newJSONRequest(ctx, address, githubStatus{
		State:       state,
		Context:     statusContext(e),
		Description: description,
	})
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}

// repository is p's repository, or the path of the followed repository.
func repository(p config.Notification, e Event) (string, error) {
	if p.Repository != "" {
		return p.Repository, nil
	}
	r, err := repoPath(e.RepoURL)
	if err != nil {
		return "", permanent(err)
	}
	return r, nil
}
