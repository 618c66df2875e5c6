package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/internal/version"
)

func newVersionCmd() *cobra.Command {
	var output *outputFormat
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version of deliver and of the libraries it was built with",
		Example: "  deliver version\n  deliver version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			w := cmd.OutOrStdout()
			if output.is("json") {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			_, err := fmt.Fprintf(w, "deliver %s\ncommit: %s\ngo: %s\nhelm: %s\nkubernetes client: %s\n",
				info.Version, info.Commit, info.Go, info.Helm, info.Kubernetes)
			return err
		},
	}
	output = addOutputFlag(cmd, "text", "json")
	return cmd
}
