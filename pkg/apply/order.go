package apply

import (
	"fmt"
	"sort"

	"github.com/deliverhq/deliver/pkg/object"
)

// Stage is a step of the apply order. Objects of a stage are applied once
// every object of the stages before it was applied.
type Stage int

// The stages, in apply order: the order of Flux's ssa package, which users
// of Flux know (definitions, cluster-wide objects, namespaced config,
// workloads, the rest, webhooks last). Helm's install order (releaseutil
// InstallOrder) differs in places: it puts NetworkPolicy and
// PodDisruptionBudget before the workloads, which here are in StageRest,
// after them, as in Flux.
const (
	StageDefinitions Stage = iota // CRDs, Namespaces
	StageCluster                  // cluster RBAC, classes, quotas
	StageConfig                   // ServiceAccounts, namespaced RBAC, ConfigMaps, Secrets, Services
	StageWorkloads                // Deployments, StatefulSets, DaemonSets, Jobs, ...
	StageRest                     // everything else
	StageWebhooks                 // admission webhooks last, so they cannot block the objects above
)

// String names the stage as the web view's object tree shows it.
func (s Stage) String() string {
	switch s {
	case StageDefinitions:
		return "definitions"
	case StageCluster:
		return "cluster"
	case StageConfig:
		return "config"
	case StageWorkloads:
		return "workloads"
	case StageRest:
		return "rest"
	case StageWebhooks:
		return "webhooks"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// StageOf returns the stage an object belongs to.
func StageOf(id object.ID) Stage {
	switch id.GroupKind().String() {
	case "CustomResourceDefinition.apiextensions.k8s.io", "Namespace":
		return StageDefinitions
	case "ClusterRole.rbac.authorization.k8s.io", "ClusterRoleBinding.rbac.authorization.k8s.io",
		"StorageClass.storage.k8s.io", "PriorityClass.scheduling.k8s.io", "IngressClass.networking.k8s.io",
		"RuntimeClass.node.k8s.io", "ResourceQuota", "LimitRange":
		return StageCluster
	case "ServiceAccount", "Role.rbac.authorization.k8s.io", "RoleBinding.rbac.authorization.k8s.io",
		"ConfigMap", "Secret", "Service", "PersistentVolume", "PersistentVolumeClaim":
		return StageConfig
	case "Deployment.apps", "StatefulSet.apps", "DaemonSet.apps", "ReplicaSet.apps", "Pod",
		"Job.batch", "CronJob.batch", "ReplicationController":
		return StageWorkloads
	case "MutatingWebhookConfiguration.admissionregistration.k8s.io",
		"ValidatingWebhookConfiguration.admissionregistration.k8s.io":
		return StageWebhooks
	}
	return StageRest
}

// Stages groups objects by stage, in apply order, each stage sorted by kind,
// namespace and name so that runs are repeatable.
func Stages(objs []*object.Object) [][]*object.Object {
	var out [StageWebhooks + 1][]*object.Object
	for _, o := range objs {
		s := StageOf(o.ID())
		out[s] = append(out[s], o)
	}
	var stages [][]*object.Object
	for _, s := range out {
		if len(s) == 0 {
			continue
		}
		sort.SliceStable(s, func(i, j int) bool { return less(s[i].ID(), s[j].ID()) })
		stages = append(stages, s)
	}
	return stages
}

func less(a, b object.ID) bool {
	if a.Group != b.Group {
		return a.Group < b.Group
	}
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}
