package apply

import "testing"

// TestAnnotationsOfOtherTools: the annotations users bring from Flux,
// Argo CD and Helm read as those tools read them.
func TestAnnotationsOfOtherTools(t *testing.T) {
	for _, tt := range []struct {
		ann             map[string]string
		prune, recreate bool
		policy          ApplyPolicy
		err             bool
	}{
		{ann: nil, prune: false},
		{ann: map[string]string{AnnotationPrune: "disabled"}, prune: true},
		{ann: map[string]string{fluxPrune: "disabled"}, prune: true},
		{ann: map[string]string{helmResourcePolicy: "keep"}, prune: true},
		{ann: map[string]string{argoSyncOptions: "Prune=false"}, prune: true},
		{ann: map[string]string{argoSyncOptions: "ServerSideApply=true, prune=false"}, prune: true},
		{ann: map[string]string{argoSyncOptions: "Prune=true"}, prune: false},
		{ann: map[string]string{argoSyncOptions: "Replace=true"}, recreate: false},
		{ann: map[string]string{argoSyncOptions: "Force=true,Replace=true"}, recreate: true},
		{ann: map[string]string{fluxForce: "Enabled"}, recreate: true},
		// Sync options deliver needs nothing for: they change nothing.
		{ann: map[string]string{argoSyncOptions: "ServerSideApply=true,Replace=true,PruneLast=true,Validate=false,SkipDryRunOnMissingResource=true"}},
		{ann: map[string]string{AnnotationRecreate: "true"}, recreate: true},
		{ann: map[string]string{AnnotationApplyPolicy: "Merge"}, policy: ApplyAlways},
		{ann: map[string]string{AnnotationApplyPolicy: "override"}, policy: ApplyAlways},
		{ann: map[string]string{AnnotationApplyPolicy: "IfNotPresent"}, policy: ApplyIfNotPresent},
		{ann: map[string]string{AnnotationApplyPolicy: "Ignore"}, policy: ApplyNever},
		{ann: map[string]string{AnnotationApplyPolicy: "sometimes"}, err: true},
		{ann: map[string]string{fluxReconcile: "disabled"}, policy: ApplyPaused, prune: true},
		{ann: map[string]string{AnnotationReconcile: "disabled", AnnotationApplyPolicy: "Ignore"}, policy: ApplyPaused, prune: true},
	} {
		if got := pruneDisabled(tt.ann); got != tt.prune {
			t.Errorf("%v: pruneDisabled = %v, want %v", tt.ann, got, tt.prune)
		}
		if got := recreateAllowed(tt.ann); got != tt.recreate {
			t.Errorf("%v: recreateAllowed = %v, want %v", tt.ann, got, tt.recreate)
		}
		got, err := applyPolicyOf(tt.ann)
		if (err != nil) != tt.err || got != tt.policy {
			t.Errorf("%v: applyPolicyOf = %v, %v, want %v (error %v)", tt.ann, got, err, tt.policy, tt.err)
		}
	}
}
