package render

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// unmarshalObject parses one YAML document into the object kubectl (and
// Helm's kube client) would build of it: sigs.k8s.io/yaml's conversion to
// JSON, then apimachinery's JSON decoding, which keeps integers as int64
// (sigs.k8s.io/yaml.Unmarshal into a map would make every number a
// float64, and change an integer above 2^53). This fast path does it
// without the round trip through JSON: the same YAML 1.1 parser
// (go.yaml.in/yaml/v2), then the values as the JSON would have turned
// them (numbers as decodeJSON reads their JSON text, keys and invalid
// UTF-8 as json.Marshal writes them). Whatever it does not handle the same
// way for sure (an error, a document that is not a map, unusual keys, very
// deep nesting) goes through the libraries themselves, so results and
// error messages are always theirs. Kept by measurement: with MarshalYAML,
// 9-15% of a Helm chart's render end to end against the library calls
// (docs/performance.md).
func unmarshalObject(raw []byte) (map[string]any, error) {
	var y any
	if err := yamlv2.Unmarshal(raw, &y); err == nil {
		switch v := y.(type) {
		case nil:
			return nil, nil
		case map[any]any:
			if m, ok := jsonMap(v, 0); ok {
				return m, nil
			}
		}
	}
	// As sigs.k8s.io/yaml.Unmarshal, with apimachinery's JSON decoding.
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("error converting YAML to JSON: %w", err)
	}
	m, err := decodeJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("error unmarshaling JSON: %w", err)
	}
	return m, nil
}

// decodeJSON decodes a JSON object as kubectl's decoder (the unstructured
// JSON scheme) does: integers that fit become int64, other numbers
// float64.
func decodeJSON(doc []byte) (map[string]any, error) {
	var m map[string]any
	if err := utiljson.Unmarshal(doc, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// jsonNumber is the number decodeJSON reads from the JSON text
// json.Marshal writes for f: an integral f below 1e21 is written as the
// digits of its shortest representation padded with zeros
// (-9223372036854776000 for -2^63), an int64 when they fit.
func jsonNumber(f float64) any {
	if f != math.Trunc(f) || math.Abs(f) >= 1e21 {
		return f
	}
	if i, err := strconv.ParseInt(strconv.FormatFloat(f, 'f', -1, 64), 10, 64); err == nil {
		return i
	}
	return f
}

// maxFastDepth bounds the nesting the fast path converts; deeper documents
// go through sigs.k8s.io/yaml, whose JSON decoder has its own limit.
const maxFastDepth = 1000

// jsonMap converts a YAML map as sigs.k8s.io/yaml does (its
// convertToJSONableObject, json.Marshal, then json.Unmarshal into any).
// ok is false when the result would not be the same for sure.
func jsonMap(in map[any]any, depth int) (map[string]any, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	out := make(map[string]any, len(in))
	for k, v := range in {
		var key string
		switch k := k.(type) {
		case string:
			key = k
		case int:
			key = strconv.Itoa(k)
		case int64:
			key = strconv.FormatInt(k, 10)
		case bool:
			key = strconv.FormatBool(k)
		default:
			// float keys (formatted at 32-bit precision), null keys
			// (an error there): rare, left to sigs.k8s.io/yaml.
			return nil, false
		}
		if !utf8.ValidString(key) {
			return nil, false // json.Marshal would rewrite it; two keys might collide
		}
		if _, dup := out[key]; dup {
			return nil, false // 1 and "1": which one wins is sigs.k8s.io/yaml's business
		}
		jv, ok := jsonValue(v, depth+1)
		if !ok {
			return nil, false
		}
		out[key] = jv
	}
	return out, true
}

func jsonValue(v any, depth int) (any, bool) {
	switch v := v.(type) {
	case nil, bool:
		return v, true
	case string:
		return jsonString(v), true
	case int:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), true
		}
		return float64(v), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false // json.Marshal refuses them
		}
		return jsonNumber(v), true
	case map[any]any:
		m, ok := jsonMap(v, depth)
		return m, ok
	case []any:
		if depth > maxFastDepth {
			return nil, false
		}
		out := make([]any, len(v))
		for i, x := range v {
			jv, ok := jsonValue(x, depth+1)
			if !ok {
				return nil, false
			}
			out[i] = jv
		}
		return out, true
	}
	return nil, false
}

// jsonString returns s as json.Marshal and json.Unmarshal give it back:
// every byte that is not part of valid UTF-8 becomes U+FFFD.
func jsonString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// decodeAll runs decode(i) for i in [0, n) on up to GOMAXPROCS goroutines
// and returns the results and errors by index. After an error the items
// not started yet are skipped (their error is errSkipped); they all come
// after the failed one, so the first error in index order is the one a
// sequential loop would have stopped at. Written by hand for that: an
// errgroup with a limit starts every item in turn whatever failed, and
// its Wait gives one error, not the one of the lowest index.
func decodeAll[T any](n int, decode func(i int) (T, error)) ([]T, []error) {
	out := make([]T, n)
	errs := make([]error, n)
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			if out[i], errs[i] = decode(i); errs[i] != nil {
				for j := i + 1; j < n; j++ {
					errs[j] = errSkipped
				}
				break
			}
		}
		return out, errs
	}
	var (
		mu     sync.Mutex
		next   int
		failed bool
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := i >= n
				if !stop && failed {
					errs[i] = errSkipped
				}
				skip := failed
				mu.Unlock()
				if stop {
					return
				}
				if skip {
					continue
				}
				var err error
				if out[i], err = decode(i); err != nil {
					mu.Lock()
					errs[i] = err
					failed = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return out, errs
}

var errSkipped = errors.New("skipped after an earlier error")
