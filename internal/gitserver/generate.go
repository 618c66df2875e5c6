package gitserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
)

// GenerateRepo creates a repository at dir whose main branch has the given
// number of commits: the first adds files files, each later one rewrites
// ten of them. It feeds git fast-import a generated stream, which is
// orders of magnitude faster than committing through the CLI, so large
// benchmark fixtures cost about a second.
func GenerateRepo(tb testing.TB, dir string, files, commits int) *Repo {
	tb.Helper()
	r := NewRepo(tb, dir)
	cmd := Command(context.Background(), dir, "fast-import", "--quiet")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	werr := writeStream(stdin, files, commits)
	stdin.Close()
	if err := cmd.Wait(); err != nil || werr != nil {
		tb.Fatalf("git fast-import: %v %v\n%s", err, werr, stderr.String())
	}
	r.commits = commits
	// fast-import only writes objects and refs; check out main so the
	// repository looks like any other non-bare fixture.
	r.Git("reset", "--quiet", "--hard", "main")
	return r
}

func writeStream(w io.Writer, files, commits int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	base := BaseTime().Unix()
	for c := 0; c < commits; c++ {
		when := base + int64(c)*60
		fmt.Fprintf(bw, "commit refs/heads/main\n")
		fmt.Fprintf(bw, "author Test Author <author@example.com> %d +0000\n", when)
		fmt.Fprintf(bw, "committer Test Committer <committer@example.com> %d +0000\n", when)
		msg := fmt.Sprintf("commit %d", c)
		fmt.Fprintf(bw, "data %d\n%s\n", len(msg), msg)
		changed := make([]int, 0, files)
		if c == 0 {
			for f := 0; f < files; f++ {
				changed = append(changed, f)
			}
		} else {
			for k := 0; k < 10; k++ {
				changed = append(changed, (c*10+k)%files)
			}
		}
		for _, f := range changed {
			content := fmt.Sprintf("# file %d, revision %d\nkind: ConfigMap\nmetadata:\n  name: cm-%d\ndata:\n  value: \"%d-%d\"\n", f, c, f, f, c)
			fmt.Fprintf(bw, "M 100644 inline dir%02d/file%05d.yaml\ndata %d\n%s\n", f%50, f, len(content), content)
		}
		fmt.Fprintf(bw, "\n")
	}
	return bw.Flush()
}
