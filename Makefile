# posthub — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
CACHE   := $(CURDIR)/.cache
TOOLS   := $(CACHE)/bin
export PATH := $(TOOLS):/usr/local/go/bin:$(PATH)
# Tests that need MinIO/FerretDB find them here; with POSTHUB_TEST_SERVERS set
# they fail instead of skipping when a server cannot be started.
export POSTHUB_TEST_BIN := $(TOOLS)

.PHONY: run test bench lint fuzz deps testservers build

deps: ## system packages (libxml2-dev, xmllint) — installs them when run as root
	@scripts/deps.sh

build: deps
	$(GO) build -o bin/posthub ./cmd/posthub

run: build ## the hub on the embedded default with demo data
	./bin/posthub serve --demo --data $(CURDIR)/data

testservers: ## MinIO and FerretDB v1.24.0 for the storage contract tests
	@scripts/install-test-servers.sh $(TOOLS)

test: testservers
	@scripts/deps.sh test
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...
	POSTHUB_TEST_SERVERS=require $(GO) test -race -timeout 25m ./...
	# The short fuzz runs are a number of inputs, not a time, and do not
	# minimise new inputs: a time limit that ends while an input is still
	# running or being minimised fails the run ("context deadline exceeded"),
	# though nothing failed (it did on a loaded machine). `make fuzz` runs
	# longer and minimises as usual.
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 100000x -fuzzminimizetime 0 ./memo
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime 100000x -fuzzminimizetime 0 ./memo
	$(GO) test -run '^$$' -fuzz FuzzKombi -fuzztime 100000x -fuzzminimizetime 0 ./sf1601
	$(GO) test -run '^$$' -fuzz FuzzArchive -fuzztime 100000x -fuzzminimizetime 0 ./bulk

bench: deps testservers
	@scripts/bench.sh

lint: deps
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

fuzz: deps
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 5m ./memo
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime 5m ./memo
	$(GO) test -run '^$$' -fuzz FuzzKombi -fuzztime 5m ./sf1601
	$(GO) test -run '^$$' -fuzz FuzzArchive -fuzztime 5m ./bulk
