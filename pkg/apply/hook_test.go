package apply

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/deliverhq/deliver/pkg/object"
)

func TestParseHook(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    *Hook // Object left out of the comparison
		skip    bool
		wantErr string
	}{
		{
			name: "deliver pre-apply",
			ann:  map[string]string{AnnotationHook: "pre-apply", AnnotationHookWeight: "-2", AnnotationHookTimeout: "90s"},
			want: &Hook{Phases: []HookPhase{PreApply}, Weight: -2, Timeout: 90 * time.Second},
		},
		{
			name: "deliver several phases, always, policies",
			ann:  map[string]string{AnnotationHook: "post-apply, on-failure", AnnotationHookRun: "always", AnnotationHookDeletePolicy: "hook-succeeded"},
			want: &Hook{Phases: []HookPhase{PostApply, OnFailure}, Always: true, DeletePolicies: []HookDeletePolicy{HookSucceeded}},
		},
		{
			name: "helm pre-install,pre-upgrade",
			ann:  map[string]string{helmHook: "pre-install,pre-upgrade", helmHookWeight: "5", helmHookDeletePolicy: "before-hook-creation,hook-succeeded"},
			want: &Hook{Phases: []HookPhase{PreApply}, Weight: 5, DeletePolicies: []HookDeletePolicy{BeforeHookCreation, HookSucceeded}},
		},
		{
			name: "helm post-upgrade",
			ann:  map[string]string{helmHook: "post-upgrade"},
			want: &Hook{Phases: []HookPhase{PostApply}, Deliveries: map[HookPhase]HookDeliveries{PostApply: LaterDeliveries}},
		},
		{
			name: "helm pre-install",
			ann:  map[string]string{helmHook: "pre-install"},
			want: &Hook{Phases: []HookPhase{PreApply}, Deliveries: map[HookPhase]HookDeliveries{PreApply: FirstDelivery}},
		},
		{
			name: "helm post-install,pre-upgrade,post-upgrade",
			ann:  map[string]string{helmHook: "post-upgrade, pre-upgrade,post-install"},
			want: &Hook{Phases: []HookPhase{PreApply, PostApply}, Deliveries: map[HookPhase]HookDeliveries{PreApply: LaterDeliveries}},
		},
		{name: "helm test hook is not run", ann: map[string]string{helmHook: "test"}, skip: true},
		{
			name: "argo PreSync with wave",
			ann:  map[string]string{argoHook: "PreSync", argoSyncWave: "3", argoHookDeletePolicy: "HookSucceeded"},
			want: &Hook{Phases: []HookPhase{PreApply}, Weight: 3, DeletePolicies: []HookDeletePolicy{HookSucceeded}},
		},
		{
			name: "argo PostSync, HookFailed",
			ann:  map[string]string{argoHook: "PostSync", argoHookDeletePolicy: "HookFailed"},
			want: &Hook{Phases: []HookPhase{PostApply}, DeletePolicies: []HookDeletePolicy{HookFailed}},
		},
		{
			name: "argo SyncFail",
			ann:  map[string]string{argoHook: "SyncFail"},
			want: &Hook{Phases: []HookPhase{OnFailure}},
		},
		{name: "argo Skip", ann: map[string]string{argoHook: "Skip"}, skip: true},
		{
			name: "deliver wins over helm",
			ann:  map[string]string{AnnotationHook: "post-apply", helmHook: "pre-install"},
			want: &Hook{Phases: []HookPhase{PostApply}},
		},
		{name: "unknown deliver phase", ann: map[string]string{AnnotationHook: "pre-deploy"}, wantErr: `Job/ns/migrate (db.yaml#0): unknown hook phase "pre-deploy"`},
		{name: "unknown helm hook", ann: map[string]string{helmHook: "pre-instal"}, wantErr: `unknown hook "pre-instal"`},
		{name: "unknown argo hook", ann: map[string]string{argoHook: "Presync"}, wantErr: `unknown hook "Presync"`},
		{name: "bad weight", ann: map[string]string{AnnotationHook: "pre-apply", AnnotationHookWeight: "first"}, wantErr: `"first" is not an integer`},
		{name: "bad policy", ann: map[string]string{AnnotationHook: "pre-apply", AnnotationHookDeletePolicy: "never"}, wantErr: `unknown delete policy "never"`},
		{name: "bad timeout", ann: map[string]string{AnnotationHook: "pre-apply", AnnotationHookTimeout: "-1s"}, wantErr: "not a positive duration"},
		{name: "bad run", ann: map[string]string{AnnotationHook: "pre-apply", AnnotationHookRun: "sometimes"}, wantErr: "is not always or on-change"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("batch/v1")
			u.SetKind("Job")
			u.SetNamespace("ns")
			u.SetName("migrate")
			u.SetAnnotations(tt.ann)
			h, ok, err := ParseHook(&object.Object{Unstructured: u, Origin: object.Origin{File: "db.yaml"}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok == tt.skip {
				t.Fatalf("ok = %v, want %v", ok, !tt.skip)
			}
			if tt.skip {
				return
			}
			h.Object = nil
			if diff := cmp.Diff(tt.want, h); diff != "" {
				t.Errorf("hook (-want +got):\n%s", diff)
			}
		})
	}
}

func TestByWeight(t *testing.T) {
	mk := func(name string, w int) *Hook {
		u := &unstructured.Unstructured{}
		u.SetKind("Job")
		u.SetName(name)
		return &Hook{Object: &object.Object{Unstructured: u}, Weight: w}
	}
	var got [][]string
	for _, g := range byWeight([]*Hook{mk("c", 1), mk("a", 0), mk("b", 1), mk("z", -5)}) {
		var names []string
		for _, h := range g {
			names = append(names, h.GetName())
		}
		got = append(got, names)
	}
	if diff := cmp.Diff([][]string{{"z"}, {"a"}, {"b", "c"}}, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
}

// TestGenerateNameHookIdentity: a hook named by generateName is known by
// its prefix, in errors and in the order of its weight group, and the
// label that finds its runs is a valid label value, the same for the same
// hook and different for another.
func TestGenerateNameHookIdentity(t *testing.T) {
	mk := func(kind, ns, name, generateName string, ann map[string]string) *object.Object {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("batch/v1")
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		u.SetGenerateName(generateName)
		u.SetAnnotations(ann)
		return &object.Object{Unstructured: u, Origin: object.Origin{File: "hooks.yaml", Doc: 1}}
	}
	argo := map[string]string{argoHook: "PreSync", argoHookDeletePolicy: "BeforeHookCreation"}
	h, ok, err := ParseHook(mk("Job", "ns", "", "upgrade-sql-schema", argo))
	if err != nil || !ok {
		t.Fatalf("ParseHook = %v, %v", ok, err)
	}
	if got, want := h.ID(), (object.ID{Group: "batch", Kind: "Job", Namespace: "ns", Name: "upgrade-sql-schema*"}); got != want {
		t.Errorf("ID = %+v, want %+v", got, want)
	}
	if diff := cmp.Diff([]HookDeletePolicy{BeforeHookCreation}, h.DeletePolicies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	_, _, err = ParseHook(mk("Job", "ns", "", "migrate-", map[string]string{helmHook: "pre-instal"}))
	if want := `Job/ns/migrate-* (hooks.yaml#1): unknown hook "pre-instal"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to contain %q", err, want)
	}

	var names []string
	for _, g := range byWeight([]*Hook{
		{Object: mk("Job", "ns", "", "b-", nil)},
		{Object: mk("Job", "ns", "", "a-", nil)},
		{Object: mk("Job", "ns", "c", "", nil)},
	}) {
		for _, h := range g {
			names = append(names, h.ID().Name)
		}
	}
	if diff := cmp.Diff([]string{"a-*", "b-*", "c"}, names); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}

	id := object.ID{Group: "batch", Kind: "Job", Namespace: "a-namespace-with-a-rather-long-name", Name: strings.Repeat("x", 200) + "*"}
	label := hookLabel(id)
	if errs := validation.IsValidLabelValue(label); len(errs) > 0 || label == "" {
		t.Errorf("hookLabel = %q: %v", label, errs)
	}
	if hookLabel(id) != label {
		t.Error("hookLabel differs for the same hook")
	}
	for _, other := range []object.ID{
		{Group: "batch", Kind: "Job", Namespace: id.Namespace, Name: strings.Repeat("x", 200) + "y*"},
		{Group: "batch", Kind: "Job", Namespace: "other", Name: id.Name},
		{Group: "", Kind: "Job", Namespace: id.Namespace, Name: id.Name},
		{Group: "batch", Kind: "CronJob", Namespace: id.Namespace, Name: id.Name},
	} {
		if hookLabel(other) == label {
			t.Errorf("hookLabel(%+v) = hookLabel(%+v)", other, id)
		}
	}
}

// TestHookForDelivery: Helm's install hooks run only in an app's first
// delivery and its upgrade hooks only in the later ones, phase by phase;
// deliver's and Argo CD's hooks in every delivery.
func TestHookForDelivery(t *testing.T) {
	for _, tt := range []struct {
		ann         map[string]string
		first, next []HookPhase
	}{
		{map[string]string{helmHook: "pre-install"}, []HookPhase{PreApply}, nil},
		{map[string]string{helmHook: "pre-upgrade"}, nil, []HookPhase{PreApply}},
		{map[string]string{helmHook: "pre-install,pre-upgrade"}, []HookPhase{PreApply}, []HookPhase{PreApply}},
		{map[string]string{helmHook: "pre-install,post-upgrade"}, []HookPhase{PreApply}, []HookPhase{PostApply}},
		{map[string]string{helmHook: "post-install,pre-upgrade,post-upgrade"}, []HookPhase{PostApply}, []HookPhase{PreApply, PostApply}},
		{map[string]string{argoHook: "PreSync,SyncFail"}, []HookPhase{PreApply, OnFailure}, []HookPhase{PreApply, OnFailure}},
		{map[string]string{AnnotationHook: "post-apply"}, []HookPhase{PostApply}, []HookPhase{PostApply}},
	} {
		for _, first := range []bool{true, false} {
			u := &unstructured.Unstructured{}
			u.SetKind("Job")
			u.SetName("h")
			u.SetAnnotations(tt.ann)
			h, ok, err := ParseHook(&object.Object{Unstructured: u})
			if err != nil || !ok {
				t.Fatalf("%v: ParseHook = %v, %v", tt.ann, ok, err)
			}
			parsed := len(h.Phases)
			why := h.forDelivery(first)
			want := tt.next
			if first {
				want = tt.first
			}
			if !slices.Equal(h.Phases, want) {
				t.Errorf("%v, first delivery %v: phases %v, want %v", tt.ann, first, h.Phases, want)
			}
			if (why != "") != (len(h.Phases) < parsed) {
				t.Errorf("%v, first delivery %v: reason %q, phases dropped: %v", tt.ann, first, why, len(h.Phases) < parsed)
			}
		}
	}
}
