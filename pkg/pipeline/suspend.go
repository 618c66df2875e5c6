package pipeline

import "fmt"

// suspend marks the apps that deliver.yaml suspends, and those that
// depend on one (directly or not), skipped, and returns the others in
// their order. A dependent waits as a Flux Kustomization waits for a
// suspended dependency: it is not delivered at a commit its dependency
// was not, and that is no failure of the run.
func suspend(apps []*AppResult) []*AppResult {
	active := make([]*AppResult, 0, len(apps))
	for _, ar := range apps {
		switch {
		case ar.app.Suspend:
			ar.Suspended = true
			ar.Skipped = "suspended in deliver.yaml"
		default:
			// ar.deps holds every app of the run it depends on, so one
			// suspended anywhere up its chain is found here.
			for _, d := range ar.deps {
				if d.app.Suspend {
					ar.Skipped = fmt.Sprintf("dependency %s is suspended", d.Name)
					break
				}
			}
		}
		if ar.Skipped == "" {
			active = append(active, ar)
		}
	}
	return active
}
