package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/internal/version"
)

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version of deliver and of the libraries it was built with",
		Example: "  deliver version\n  deliver version -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			w := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			case "":
				fmt.Fprintf(w, "deliver %s\ncommit: %s\ngo: %s\nhelm: %s\nkubernetes client: %s\n",
					info.Version, info.Commit, info.Go, info.Helm, info.Kubernetes)
				return nil
			default:
				return fmt.Errorf("unknown output format %q (want json)", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}
