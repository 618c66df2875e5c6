package testenv

import "strings"

// ViewApps are the files of the repository the web view's tests share
// (pkg/ui and test/browser): two apps in namespace ns, web (a ConfigMap
// with color blue, a Secret whose password is canary, a Deployment of one
// replica) and db (a ConfigMap and a pre-apply migration Job whose Pod
// carries FailLabel, so kwok ends it with exit code 1). webExtra holds
// more lines of web's deliver.yaml entry, indented by two.
func ViewApps(ns, canary, webExtra string) map[string]string {
	return map[string]string{
		"deliver.yaml": strings.ReplaceAll(`apiVersion: deliver.dev/v1alpha1
kind: Config
apps:
- name: web
  namespace: NS
  manifests: {path: web}
`+webExtra+`- {name: db, namespace: NS, manifests: {path: db}}
`, "NS", ns),
		"web/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {color: blue}\n",
		"web/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: web}\nstringData: {password: " + canary + "}\n",
		"web/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
`,
		"db/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db}\ndata: {size: small}\n",
		"db/migrate.yaml": `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {deliver.dev/hook: pre-apply}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {` + FailLabel + `: "true"}}
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: migrate:1}]
`,
	}
}
