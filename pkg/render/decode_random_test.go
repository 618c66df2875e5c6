package render

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// yamlGen writes random documents in the styles manifests use, with tricky
// scalars, keys, comments and spacing mixed in: go test -fuzz mutates bytes
// and seldom produces a well-formed nested document, so this covers the
// structures manifests have.
type yamlGen struct {
	r *rand.Rand
	b strings.Builder
}

// genScalars are plain scalars as manifests have them; genTricky are
// numbers of every form, YAML 1.1 booleans and nulls, and text with
// indicators in it.
var (
	genScalars = []string{
		"web", "registry.example/app:1.0.0", "10m", "16Mi", "http://x:80/y", "a b", "x-y_z.w", "ConfigMap", "v1",
		"0", "1", "8080", "1.5", "true", "false", "a:b", "$(VAR)", "<none>",
	}
	genTricky = []string{
		"a  b", "-1", "+1", ".5", "-.5", "1e3", "1.e5", "0x1F", "0o17", "017", "1_000", "0b101", "9223372036854775808",
		"yes", "No", "on", "OFF", "y", "n", "False", "~", "null", "NULL", "Null", ".inf", "-.Inf", ".nan",
		"2001-12-14", "12:30", "1:2:3", "a#b", "a?b", "a,b", "a[0]", "a{b}", "a]", "-x", "--x", "-", "?x", ":x",
		"<<", "a|b", "a>b", "%x", "@x", "`x`", "!x", "&x", "*x", "a # comment", "a: b", "a:", "é",
	}
)

// genKeys has no null keys: with two of them the error names one at
// random.
var (
	genKeys       = []string{"apiVersion", "kind", "name", "namespace", "app.kubernetes.io/name", "data", "spec", "k8s.io/x", "x_y"}
	genTrickyKeys = []string{
		"a b", "k:ey", "k#ey", "1", "10", "on", "yes", "<<", "-k", "?k", "k?", "a,b", "[k]", "{k}", "key ",
		"\"quoted\"", "'single'", "\"with: colon\"", "'it''s'",
	}
)

func (g *yamlGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

// scalar and key pick a tricky one now and then.
func (g *yamlGen) scalar() string {
	if g.r.IntN(6) == 0 {
		return g.pick(genTricky)
	}
	return g.pick(genScalars)
}

func (g *yamlGen) key() string {
	if g.r.IntN(10) == 0 {
		return g.pick(genTrickyKeys)
	}
	return g.pick(genKeys)
}

func (g *yamlGen) maybeComment() string {
	if g.r.IntN(8) == 0 {
		return " # " + g.scalar()
	}
	return ""
}

func (g *yamlGen) quoted() string {
	s := g.scalar()
	if g.r.IntN(2) == 0 {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	esc := []string{`\n`, `\t`, `\"`, `\\`, `\x41`, `\u00e9`, `\'`, `\0`, `\/`, `\q`, `\ud800`}
	if g.r.IntN(3) > 0 {
		esc = []string{""}
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + g.pick(esc) + `"`
}

// flow writes a one-line flow collection.
func (g *yamlGen) flow(depth int) string {
	n := g.r.IntN(4)
	items := make([]string, n)
	mapping := g.r.IntN(2) == 0
	for i := range items {
		var v string
		switch {
		case depth < 3 && g.r.IntN(4) == 0:
			v = g.flow(depth + 1)
		case g.r.IntN(4) == 0:
			v = g.quoted()
		default:
			v = g.scalar()
		}
		if mapping {
			v = g.key() + g.pick([]string{": ", ": ", ": ", ":", " : ", ":  "}) + v
		}
		items[i] = v
	}
	sep := g.pick([]string{", ", ",", " , "})
	if mapping {
		return "{" + strings.Join(items, sep) + "}"
	}
	return "[" + strings.Join(items, sep) + "]"
}

// literal writes a block scalar's header; its content follows on the
// next lines.
func (g *yamlGen) literal(parent int) {
	g.b.WriteString(g.pick([]string{"|", "|", "|-", "|-", "| # c", "|+", ">", "|2"}) + "\n")
	indent := parent + 1 + g.r.IntN(3)
	for range 1 + g.r.IntN(4) {
		switch g.r.IntN(10) {
		case 0:
			g.b.WriteString("\n")
		case 1:
			g.b.WriteString(strings.Repeat(" ", g.r.IntN(indent+2)) + "\n")
		case 2:
			g.b.WriteString(strings.Repeat(" ", indent+g.r.IntN(3)) + "# not a comment " + g.scalar() + "\n")
		default:
			g.b.WriteString(strings.Repeat(" ", indent) + g.scalar() + strings.Repeat(" ", g.r.IntN(2)) + "\n")
		}
	}
}

// value writes what follows "key:" (or "- ") at the given indentation.
func (g *yamlGen) value(indent, depth int) {
	sp := g.pick([]string{" ", " ", " ", "  "})
	switch n := g.r.IntN(10); {
	case n < 3 || depth > 4:
		g.b.WriteString(sp + g.scalar() + g.maybeComment() + "\n")
		if g.r.IntN(15) == 0 {
			// A continuation line: a multi-line plain scalar, or an error.
			g.b.WriteString(strings.Repeat(" ", indent+1+g.r.IntN(2)) + g.scalar() + "\n")
		}
	case n == 3:
		g.b.WriteString(sp + g.quoted() + g.maybeComment() + "\n")
	case n == 4:
		g.b.WriteString(sp + g.flow(0) + g.maybeComment() + "\n")
	case n == 5:
		g.b.WriteString(" ")
		g.literal(indent)
	case n == 6:
		g.b.WriteString(g.maybeComment() + "\n")
		g.sequence(indent+2*g.r.IntN(2), depth+1) // indented or not
	default:
		g.b.WriteString(g.maybeComment() + "\n")
		g.mapping(indent+1+g.r.IntN(3), depth+1)
	}
}

// gap writes, now and then, an empty line or a comment line.
func (g *yamlGen) gap(indent int) {
	switch g.r.IntN(12) {
	case 0:
		g.b.WriteString(strings.Repeat(" ", g.r.IntN(3)) + "\n")
	case 1:
		g.b.WriteString(strings.Repeat(" ", g.r.IntN(indent+3)) + "# a comment: " + g.scalar() + "\n")
	}
}

func (g *yamlGen) mapping(indent, depth int) {
	for range 1 + g.r.IntN(4) {
		g.gap(indent)
		g.b.WriteString(strings.Repeat(" ", indent) + g.key() + g.pick([]string{":", ":", ":", " :"}))
		g.value(indent, depth)
	}
}

func (g *yamlGen) sequence(indent, depth int) {
	for range 1 + g.r.IntN(3) {
		g.gap(indent)
		g.b.WriteString(strings.Repeat(" ", indent) + "-")
		if g.r.IntN(3) == 0 {
			// A compact mapping: its keys line up after "- ".
			g.b.WriteString(" " + g.key() + ":")
			g.value(indent+2, depth+1)
			for range g.r.IntN(3) {
				g.b.WriteString(strings.Repeat(" ", indent+2) + g.key() + ":")
				g.value(indent+2, depth+1)
			}
			continue
		}
		g.value(indent, depth)
	}
}

// TestUnmarshalObjectRandomDocuments compares unmarshalObject with
// kubectl's reading (kubectlUnmarshal) on generated documents.
func TestUnmarshalObjectRandomDocuments(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	for i := range n {
		g := &yamlGen{r: rand.New(rand.NewPCG(uint64(i), 7))}
		g.mapping(0, 0)
		doc := g.b.String()
		if i%2 == 1 {
			doc = strings.TrimSuffix(doc, "\n")
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkUnmarshalObject(t, []byte(doc)) })
		if t.Failed() {
			t.Fatalf("document %d:\n%s", i, doc)
		}
	}
}
