package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/deliverhq/deliver/pkg/apply"
	"github.com/deliverhq/deliver/pkg/pin"
)

func newPinCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	o := pin.Options{}
	cmd := &cobra.Command{
		Use:   "pin APP --revision REV --reason TEXT",
		Short: "Hold an app at one revision: the reconciler delivers nothing newer until unpin",
		Long: `pin resolves --revision (a commit SHA, a tag or a branch) to a full commit
SHA of the repository (--repo, or the git repository of --path), checks that
deliver.yaml there holds the app, and records the pin on the app's
inventory Secret in the environment's cluster, with who set it (the user the
API server authenticates), when and --reason. The reconciler then delivers
that revision of the app, reverts drift to it, and delivers nothing newer
until deliver unpin. pin itself applies nothing; deliver rollback does.`,
		Example: `  deliver pin web --revision 3f2a9c1 --reason "1.4 corrupts uploads, INC-1234"
  deliver pin web --repo https://github.com/org/deploy --env prod --revision v1.3.0 --reason "hold for the audit"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.prepare(cmd, g); err != nil {
				return err
			}
			o.App, o.Pipeline = args[0], f.opts
			res, err := pin.Pin(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printPinResult(cmd.OutOrStdout(), f, res)
		},
	}
	addPinFlags(cmd, f, &o, true)
	cmd.Flags().StringVar(&o.Revision, "revision", "", "commit SHA (full or abbreviated), tag or branch to pin the app to (required)")
	_ = cmd.MarkFlagRequired("revision")
	return cmd
}

// addPinFlags adds the flags of pin and rollback: the source and cluster
// flags of apply (cluster: also its apply flags), --reason and -o.
func addPinFlags(cmd *cobra.Command, f *runFlags, o *pin.Options, pinOnly bool) {
	addRunFlags(cmd, f, !pinOnly)
	fl := cmd.Flags()
	if pinOnly {
		fl.StringVar(&f.opts.Apply.InventoryNamespace, "inventory-namespace", "deliver-system", "namespace of the inventory Secrets")
		// The revision is --revision; a pin names its app as an argument.
		for _, name := range []string{"ref", "app", "filename", "require-clean", "kube-version"} {
			_ = fl.MarkHidden(name)
		}
	} else {
		_ = fl.MarkHidden("app")
	}
	fl.StringVar(&o.Reason, "reason", "", "why, recorded with the pin for whoever comes next (required)")
	_ = cmd.MarkFlagRequired("reason")
	f.output = addOutputFlag(cmd, "text", "json")
}

// printPinResult prints what pin, unpin or rollback did.
func printPinResult(w io.Writer, f *runFlags, res *pin.Result) error {
	if f.output.is("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	switch {
	case res.Pin != nil && res.From != "":
		fmt.Fprintf(w, "rolled back app %s from %s to %s\n", res.App, orDash(shortRev(res.From)), shortRev(res.Pin.Revision))
	case res.Pin != nil:
		fmt.Fprintf(w, "pinned app %s to %s\n", res.App, res.Pin.Revision)
	case res.Previous != nil:
		fmt.Fprintf(w, "unpinned app %s (was pinned to %s): the reconciler delivers the head again\n", res.App, shortRev(res.Previous.Revision))
	default:
		fmt.Fprintf(w, "app %s was not pinned\n", res.App)
	}
	if res.Pin != nil {
		fmt.Fprintf(w, "pinned by %s at %s: %s\n", res.Pin.By, res.Pin.At.Format(time.RFC3339), oneLine(res.Pin.Reason))
		if res.Previous != nil && res.Previous.Revision != res.Pin.Revision {
			fmt.Fprintf(w, "replaced the pin to %s by %s\n", shortRev(res.Previous.Revision), res.Previous.By)
		}
	}
	if res.Apply != nil {
		printResult(w, res.Apply)
	}
	return nil
}

// printPins prints, below deliver status's table, each pinned app with
// who pinned it, when and why.
func printPins(w io.Writer, apps []appStatusView) error {
	for _, a := range apps {
		if p := a.Pin; p != nil {
			at := "-"
			if !p.At.IsZero() {
				at = p.At.UTC().Format(time.RFC3339)
			}
			if _, err := fmt.Fprintf(w, "%s pinned to %s by %s at %s: %s\n", a.App, shortRev(p.Revision), orDash(p.By), at, oneLine(p.Reason)); err != nil {
				return err
			}
		}
	}
	return nil
}

// pinAnnotations lists the annotations of a pin, for help texts.
var pinAnnotations = apply.AnnotationPin + ", " + apply.AnnotationPinnedBy + ", " + apply.AnnotationPinnedAt + ", " + apply.AnnotationPinReason
