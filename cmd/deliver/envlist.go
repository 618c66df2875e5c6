package main

import (
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// envList makes --env of deliver reconcile repeatable (--env a --env b)
// and comma-separated (--env a,b) for several clusters (issue #20),
// while dst, the pipeline's one environment, keeps the first.
type envList struct {
	dst  *string
	list []string
}

// repeatableEnv turns the flag --env of fl, which sets dst, into an
// envList.
func repeatableEnv(fl *pflag.FlagSet, dst *string) *envList {
	f := fl.Lookup("env")
	l := &envList{dst: dst}
	f.Value = l
	f.Usage = "environment of deliver.yaml; several (repeated or comma-separated) are each delivered to their own cluster, as with --clusters"
	return l
}

func (l *envList) Set(v string) error {
	for e := range strings.SplitSeq(v, ",") {
		if e = strings.TrimSpace(e); e != "" && !slices.Contains(l.list, e) {
			l.list = append(l.list, e)
		}
	}
	if len(l.list) > 0 {
		*l.dst = l.list[0]
	}
	return nil
}

func (l *envList) String() string { return strings.Join(l.list, ",") }
func (l *envList) Type() string   { return "strings" }
