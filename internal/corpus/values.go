package corpus

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// ValueScalars are scalars as values files write them: the words YAML 1.1
// reads as booleans and nulls, numbers in every notation (large, octal,
// hex, exponent, infinities), dates and times, quoted and tagged forms of
// all of these, and strings that look like something else.
var ValueScalars = []string{
	"yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "true", "False", "TRUE",
	"~", "null", "Null", "",
	"0", "-0", "1", "42", "+12", "1000000", "1e6", "1.0", "3.14159", "6.8523015e+5", "-1.5e-3",
	"0x1F", "0o17", "017", "0755", "1_000", "0b101",
	"9007199254740993", "123456789012345678901234567890", "18446744073709551615",
	"12:30:00", "190:20:30",
	"2001-12-14", "2001-12-14T21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
	`"yes"`, `'0755'`, `"1000000"`, `"2001-12-14"`, `''`, `"it's"`, `'it''s'`,
	`"tab\there"`, `"\u00e9t\u00e9"`, `"line\nbreak"`,
	"!!str 1000000", "!!str yes", "!!int \"42\"", "!!float 1", "!!str", "!!null ''",
	"plain words here", "http://example.org:8080/path?q=1", "a:b", "-dash", "été",
	"key=value,other=x", "$HOME",
}

// refusedScalars are scalars Helm refuses in a values file (not JSON, or
// not YAML), written rarely.
var refusedScalars = []string{".inf", "-.Inf", ".NaN", "%percent", "@at", "`backtick`"}

// valueKeys are mapping keys, some of which YAML 1.1 reads as something
// other than a string.
var valueKeys = []string{
	"name", "image", "replicaCount", "enabled", "tag", "config", "annotations",
	"yes", "on", "1", "0755", "1.5", "true", "\"quoted key\"", "with.dots", "with-dash",
}

// Nested is text (a values file) indented by n spaces to stand under a
// key of a larger YAML document, ending in one line break: never a blank
// line more, which a block scalar kept with |+ would keep.
func Nested(n int, text string) string {
	s := Indent(n, text)
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// ValuesFiles returns n values files (YAML text, one mapping each) in the
// shapes charts' values.yaml files take: nested mappings and lists in
// block and flow style, block scalars, comments, anchors with aliases and
// merge keys, and every scalar of ValueScalars as a value. Generated from
// seed; the same seed gives the same files.
func ValuesFiles(seed uint64, n int) []string {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		g := valuesGen{r: r, b: &b}
		g.mapping(0, 0)
		out = append(out, b.String())
	}
	return out
}

type valuesGen struct {
	r       *rand.Rand
	b       *strings.Builder
	anchors []string
}

func (g *valuesGen) key(seen map[string]bool) string {
	for {
		k := valueKeys[g.r.IntN(len(valueKeys))]
		if g.r.IntN(100) == 0 {
			k = "~" // a null key, which Helm refuses
		}
		if g.r.IntN(3) == 0 && !strings.HasPrefix(k, "\"") {
			k = fmt.Sprintf("%s%d", k, g.r.IntN(100))
		}
		if !seen[k] {
			seen[k] = true
			return k
		}
	}
}

// mapping writes a block mapping at indent, depth levels down.
func (g *valuesGen) mapping(indent, depth int) {
	pad := strings.Repeat(" ", indent)
	seen := map[string]bool{}
	for i := range 1 + g.r.IntN(5) {
		if g.r.IntN(8) == 0 {
			fmt.Fprintf(g.b, "%s# comment %d: yes\n", pad, i)
		}
		if len(g.anchors) > 0 && depth > 0 && g.r.IntN(6) == 0 && !seen["<<"] {
			seen["<<"] = true
			fmt.Fprintf(g.b, "%s<<: *%s\n", pad, g.anchors[g.r.IntN(len(g.anchors))])
			continue
		}
		k := g.key(seen)
		fmt.Fprintf(g.b, "%s%s:", pad, k)
		g.value(indent, depth)
	}
}

// value writes the value of a key at indent, after its colon.
func (g *valuesGen) value(indent, depth int) {
	pad := strings.Repeat(" ", indent)
	switch c := g.r.IntN(10); {
	case c < 2 && depth < 3:
		if g.r.IntN(4) == 0 {
			a := fmt.Sprintf("a%d", len(g.anchors))
			fmt.Fprintf(g.b, " &%s", a)
			defer func() { g.anchors = append(g.anchors, a) }()
		}
		g.b.WriteString("\n")
		g.mapping(indent+2, depth+1)
	case c < 3 && depth < 3:
		g.b.WriteString("\n")
		for range 1 + g.r.IntN(3) {
			fmt.Fprintf(g.b, "%s- %s\n", pad, g.scalar())
		}
	case c < 4:
		items := make([]string, g.r.IntN(4))
		for i := range items {
			items[i] = g.flowScalar()
		}
		if g.r.IntN(2) == 0 {
			fmt.Fprintf(g.b, " [%s]\n", strings.Join(items, ", "))
		} else {
			for i := range items {
				items[i] = fmt.Sprintf("k%d: %s", i, items[i])
			}
			fmt.Fprintf(g.b, " {%s}\n", strings.Join(items, ", "))
		}
	case c < 5:
		ind := BlockIndicators[g.r.IntN(len(BlockIndicators))]
		body := BlockBodies[g.r.IntN(len(BlockBodies))]
		if strings.HasPrefix(body, " ") && !strings.ContainsAny(ind, "0123456789") {
			body = "x" + body
		}
		fmt.Fprintf(g.b, " %s\n%s\n", ind, Indent(indent+2, body))
	case c < 6 && len(g.anchors) > 0:
		fmt.Fprintf(g.b, " *%s\n", g.anchors[g.r.IntN(len(g.anchors))])
	default:
		if s := g.scalar(); s == "" {
			g.b.WriteString("\n")
		} else {
			fmt.Fprintf(g.b, " %s\n", s)
		}
	}
}

func (g *valuesGen) scalar() string {
	if g.r.IntN(60) == 0 {
		return refusedScalars[g.r.IntN(len(refusedScalars))]
	}
	return ValueScalars[g.r.IntN(len(ValueScalars))]
}

// flowScalar is a scalar that may stand in a flow collection.
func (g *valuesGen) flowScalar() string {
	for {
		s := g.scalar()
		if s != "" && !strings.ContainsAny(s, ",[]{}#`") && !strings.HasPrefix(s, "!!") {
			return s
		}
	}
}
