package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/corpus"
	"github.com/deliverhq/deliver/internal/sopstest"
	"github.com/deliverhq/deliver/internal/testenv"
)

// sopsCLI runs the sops CLI built by hack/testbin.sh (skipped with -short
// when it is not built) in dir, with the age keys of keyFile.
type sopsCLI struct {
	bin, dir, keyFile string
}

func newSOPSCLI(t *testing.T, keyFile string) *sopsCLI {
	t.Helper()
	bin, err := testenv.Binary("sops")
	if err != nil {
		if testing.Short() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	return &sopsCLI{bin: bin, dir: t.TempDir(), keyFile: keyFile}
}

func (c *sopsCLI) run(args ...string) ([]byte, error) {
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir // no .sops.yaml above a temporary folder
	cmd.Env = append(os.Environ(), "SOPS_AGE_KEY_FILE="+c.keyFile, "SOPS_DISABLE_VERSION_CHECK=1", "HOME="+c.dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("sops %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// sopsCase is one plaintext of the corpus, and the sops -e flags it is
// encrypted with.
type sopsCase struct {
	name  string // file name: its extension picks the format
	plain []byte
	flags []string
}

// sopsCorpus builds plaintexts in every format sops reads: YAML values
// files of the generated corpus (YAML 1.1 words, numbers in every
// notation, dates, tags, anchors, block scalars), the same as JSON, dotenv
// and INI files of the corpus's scalars, and binary files; each with one
// of the ways teams limit what sops encrypts.
func sopsCorpus() []sopsCase {
	r := rand.New(rand.NewPCG(43, 1))
	flagSets := [][]string{
		nil,
		{"--encrypted-regex", "^(name|image|config|data|stringData)"},
		{"--unencrypted-regex", "^(tag|enabled)"},
		{"--unencrypted-suffix", "_plain"},
		{"--encrypted-regex", "^(name|config)", "--mac-only-encrypted"},
	}
	var out []sopsCase
	add := func(name string, plain []byte) {
		out = append(out, sopsCase{name: name, plain: plain, flags: flagSets[len(out)%len(flagSets)]})
	}
	for i, text := range corpus.ValuesFiles(41, 40) {
		add(fmt.Sprintf("v%d.yaml", i), []byte(text))
		var m map[string]any
		if yaml.Unmarshal([]byte(text), &m) == nil {
			if j, err := json.MarshalIndent(m, "", "  "); err == nil {
				add(fmt.Sprintf("v%d.json", i), j)
			}
		}
	}
	scalar := func() string {
		for {
			s := corpus.ValueScalars[r.IntN(len(corpus.ValueScalars))]
			if !strings.ContainsAny(s, "\n") {
				return s
			}
		}
	}
	for i := range 15 {
		var env, ini strings.Builder
		for j := range 1 + r.IntN(6) {
			if r.IntN(5) == 0 {
				env.WriteString("# a comment\n\n")
			}
			fmt.Fprintf(&env, "KEY_%d=%s\n", j, scalar())
		}
		for s := range 1 + r.IntN(3) {
			fmt.Fprintf(&ini, "[section%d]\n", s)
			for j := range 1 + r.IntN(4) {
				fmt.Fprintf(&ini, "key%d = %s\n", j, scalar())
			}
		}
		add(fmt.Sprintf("e%d.env", i), []byte(env.String()))
		add(fmt.Sprintf("i%d.ini", i), []byte(ini.String()))
		bin := make([]byte, r.IntN(300))
		for k := range bin {
			bin[k] = byte(r.IntN(256))
		}
		add(fmt.Sprintf("b%d.bin", i), bin)
		if i%5 == 0 {
			// Suffixes are case-sensitive to sops: these are binary.
			add(fmt.Sprintf("u%d.YAML", i), []byte("a: 1\nb: [x]\n"))
			add(fmt.Sprintf("u%d.Json", i), []byte("{\"a\": 1}\n"))
		}
	}
	return out
}

// TestDecryptMatchesSOPSCLI: files the sops CLI encrypted (sops -e, with
// an age key, in every format and with encrypted/unencrypted regexes and
// suffixes, MAC over encrypted values only) decrypt in deliver to what
// `sops -d` prints, byte for byte; a whole-value ref (ref+sops://file#/key)
// gives what `sops -d --extract` prints; a file whose value was tampered
// with, or decrypted with another key, is refused by both.
func TestDecryptMatchesSOPSCLI(t *testing.T) {
	id, recipient, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := sopstest.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	keyFile := filepath.Join(keys, "key.txt")
	if err := os.WriteFile(keyFile, []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := newSOPSCLI(t, keyFile)
	s, err := NewSOPS(SOPSOptions{AgeKeys: []string{id}, NoCloudKMS: true})
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := NewSOPS(SOPSOptions{AgeKeys: []string{other}, NoCloudKMS: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	compared, extracted, notEncryptable := 0, 0, 0
	cases := sopsCorpus()
	for _, c := range cases {
		plain := filepath.Join(cli.dir, c.name)
		if err := os.WriteFile(plain, c.plain, 0o600); err != nil {
			t.Fatal(err)
		}
		enc, err := cli.run(slices.Concat([]string{"--encrypt", "--age", recipient}, c.flags, []string{c.name})...)
		if err != nil {
			notEncryptable++ // sops refuses the plaintext (anchors, keys it cannot take)
			continue
		}
		encName := "enc." + c.name
		if err := os.WriteFile(filepath.Join(cli.dir, encName), enc, 0o600); err != nil {
			t.Fatal(err)
		}
		want, werr := cli.run("--decrypt", encName)
		got, err := s.Decrypt(ctx, encName, enc, FormatAuto)
		if (werr == nil) != (err == nil) {
			t.Errorf("%s %v: sops -d: %v\ndeliver: %v", c.name, c.flags, werr, err)
			continue
		}
		if werr != nil {
			continue
		}
		compared++
		if !bytes.Equal(want, got) {
			t.Errorf("%s %v: decrypted (-sops -d +deliver):\n-%q\n+%q", c.name, c.flags, want, got)
		}

		// Whole-value refs of the top-level scalars against --extract.
		if ext := filepath.Ext(c.name); ext == ".yaml" || ext == ".json" {
			data, err := s.DecryptData(ctx, encName, enc, FormatAuto)
			if err != nil {
				t.Fatal(err)
			}
			res := NewResolver(ResolverOptions{SOPS: s, Root: cli.dir})
			for _, k := range slices.Sorted(maps.Keys(data)) {
				// A ref names keys without spaces, slashes or tildes; a
				// null embeds as "" (sops prints null).
				v := data[k]
				if _, ok := scalarText(v); !ok || v == nil || strings.ContainsAny(k, "/~ \t") {
					continue
				}
				wantV, werr := cli.run("--decrypt", "--extract", fmt.Sprintf("[%q]", k), encName)
				gotV, err := res.Resolve(ctx, "prefix ref+sops://"+encName+"#/"+k+" suffix")
				if werr != nil || err != nil {
					if (werr == nil) != (err == nil) {
						t.Errorf("%s key %q: sops --extract: %v\ndeliver: %v", c.name, k, werr, err)
					}
					continue
				}
				extracted++
				if _, isString := v.(string); !isString && filepath.Ext(c.name) == ".yaml" {
					// The YAML store prints a number or boolean with a
					// line break after it: the CLI's, not the value's.
					wantV = bytes.TrimSuffix(wantV, []byte("\n"))
				}
				if w := "prefix " + string(wantV) + " suffix"; w != gotV {
					t.Errorf("%s key %q: embedded ref = %q, sops --extract gives %q", c.name, k, gotV, w)
				}
			}
		}

		// A value tampered with, and another key: refused by both.
		if i := bytes.Index(enc, []byte("ENC[AES256_GCM,data:")); i >= 0 {
			bad := slices.Clone(enc)
			j := i + len("ENC[AES256_GCM,data:")
			if bad[j] == 'A' {
				bad[j] = 'B'
			} else {
				bad[j] = 'A'
			}
			badName := "bad." + c.name
			if err := os.WriteFile(filepath.Join(cli.dir, badName), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			_, werr := cli.run("--decrypt", badName)
			_, err := s.Decrypt(ctx, badName, bad, FormatAuto)
			if (werr == nil) != (err == nil) {
				t.Errorf("%s tampered: sops -d: %v\ndeliver: %v", c.name, werr, err)
			}
		}
		if _, err := wrong.Decrypt(ctx, encName, enc, FormatAuto); err == nil {
			t.Errorf("%s: decrypted with another age key", c.name)
		}
	}
	t.Logf("%d files compared, %d refs compared with --extract, %d plaintexts sops does not encrypt", compared, extracted, notEncryptable)
	if compared < len(cases)*7/10 || extracted < 60 {
		t.Errorf("only %d of %d files and %d refs compared", compared, len(cases), extracted)
	}
}
