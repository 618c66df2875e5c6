# deliver: the two commands a developer needs are `make test` and `make demo`.

# The control-plane binaries are built from source once and cached here.
export DELIVER_TESTBIN ?= $(CURDIR)/.testbin

VERSION ?= dev
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/deliverhq/deliver/internal/version.Version=$(VERSION) \
           -X github.com/deliverhq/deliver/internal/version.Commit=$(COMMIT)

# Integration tests start their own control plane per package: run packages
# one at a time on small machines. Inside a package tests run one after
# another, but for the few that call t.Parallel.
GOTEST_FLAGS ?= -p 1 -count=1 -timeout 25m

.PHONY: all build testbin test test-unit fuzz vulncheck demo bench clean

all: build

# Static, like the image: a cgo build exports every symbol (kustomize imports
# the plugin package), which costs about 30 MiB of RSS.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/deliver ./cmd/deliver

testbin:
	hack/testbin.sh all

# Every test, unit and integration, against the real control plane and Vault.
# `go vet` first compiles every package and test in parallel, so the serial
# test run below only links and runs; vetting again for macOS keeps
# Linux-only calls (such as internal/testenv's Pdeathsig) behind build tags.
test: testbin
	go vet ./...
	GOOS=darwin go vet ./...
	go test $(GOTEST_FLAGS) ./...
	$(MAKE) fuzz
	$(MAKE) vulncheck

# govulncheck over every package: fails on a called vulnerable function.
# The self-test proves that with a made-up entry in a local database; the
# real check needs vuln.go.dev and says NOT RUN where it is unreachable
# (VULNCHECK_REQUIRED=1 makes that a failure).
vulncheck:
	hack/vulncheck.sh self-test
	hack/vulncheck.sh

# Each fuzz target briefly, from the seeds in the fuzz functions and any
# failing inputs kept in testdata/fuzz.
# -short: a package's TestMain would otherwise start a control plane in the
# fuzzer and in each of its workers, and the workers, stopped by the fuzzer,
# would leave their folders in TMPDIR.
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# fail a target with a bare "context deadline exceeded" as the time runs out
# (go.dev/issue/75804, fixed in Go 1.27), which failed CI once. 3000 inputs
# take 4-8 s per target here. Longer: make fuzz FUZZ_TIME=200000x.
FUZZ_TIME ?= 3000x
fuzz:
	go test -short -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_TIME) ./pkg/config
	go test -short -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZ_TIME) ./pkg/render
	go test -short -run '^$$' -fuzz '^FuzzUnmarshalObject$$' -fuzztime $(FUZZ_TIME) ./pkg/render
	go test -short -run '^$$' -fuzz '^FuzzReadDocuments$$' -fuzztime $(FUZZ_TIME) ./pkg/render
	go test -short -run '^$$' -fuzz '^FuzzSubstitute$$' -fuzztime $(FUZZ_TIME) ./pkg/render
	go test -short -run '^$$' -fuzz '^FuzzParseRef$$' -fuzztime $(FUZZ_TIME) ./pkg/secrets
	go test -short -run '^$$' -fuzz '^FuzzRedact$$' -fuzztime $(FUZZ_TIME) ./pkg/secrets

# Unit tests only: no control plane, no binaries needed.
test-unit:
	go test -short -count=1 ./...

demo: testbin build
	go run ./hack/demo -deliver bin/deliver -example examples/app $(DEMO_FLAGS)

# deliver side by side with helm, kustomize, kubectl and Flux on the local
# control plane (docs/performance.md): BENCH_FLAGS=-quick for the short run.
# Flux's controllers are built for the benchmark only (hack/benchbin.sh,
# 15-50 min cold), never for make test, and not with BENCH_FLAGS=-flux=false.
bench: testbin build
	$(if $(findstring -flux=false,$(BENCH_FLAGS)),,hack/benchbin.sh all)
	go run ./hack/bench -deliver bin/deliver $(BENCH_FLAGS)

clean:
	rm -rf bin .cache
