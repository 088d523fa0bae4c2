# The Go client (clients/go): included by the top-level Makefile; paths are
# relative to the repository root. It uses the top-level $(PY), $(TOOLS),
# $(VENV) and $(PROTOS).

GO ?= go
GO_DIR := clients/go
GO_MODULE := github.com/interlock-dev/interlock/clients/go
GO_GEN_PKG := interlockv1
# The code generators, pinned; `go install` puts them in $(TOOLS).
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOC_GEN_GO := $(TOOLS)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/protoc-gen-go-grpc
# A stamp per version, so that changing a pin rebuilds the generator.
PROTOC_GEN_GO_STAMP := $(TOOLS)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
PROTOC_GEN_GO_GRPC_STAMP := $(TOOLS)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)

# Every proto file maps to the one Go package; the protos carry no go_package
# option (that would change the other languages' generated code).
GO_PROTO_MAP := $(foreach p,$(PROTOS),M$(patsubst protos/%,%,$(p))=$(GO_MODULE)/$(GO_GEN_PKG);$(GO_GEN_PKG))
# $(call go_protoc,OUTPUT_DIR): generate the Go code into OUTPUT_DIR/interlockv1.
go_protoc = $(PY) -m grpc_tools.protoc -I protos \
	--plugin=protoc-gen-go=$(PROTOC_GEN_GO) --plugin=protoc-gen-go-grpc=$(PROTOC_GEN_GO_GRPC) \
	--go_out=$(1) --go_opt=module=$(GO_MODULE) $(foreach m,$(GO_PROTO_MAP),'--go_opt=$(m)') \
	--go-grpc_out=$(1) --go-grpc_opt=module=$(GO_MODULE) $(foreach m,$(GO_PROTO_MAP),'--go-grpc_opt=$(m)') \
	$(PROTOS)

$(PROTOC_GEN_GO_STAMP):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	rm -f $(TOOLS)/.protoc-gen-go-v*
	touch $@

$(PROTOC_GEN_GO_GRPC_STAMP):
	mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	rm -f $(TOOLS)/.protoc-gen-go-grpc-v*
	touch $@

.PHONY: go-proto
go-proto: $(VENV)/.installed $(PROTOC_GEN_GO_STAMP) $(PROTOC_GEN_GO_GRPC_STAMP) ## Regenerate the Go client's stubs (clients/go/interlockv1) from protos/
	rm -f $(GO_DIR)/$(GO_GEN_PKG)/*.pb.go
	$(call go_protoc,$(GO_DIR))

.PHONY: go-proto-check
go-proto-check: $(VENV)/.installed $(PROTOC_GEN_GO_STAMP) $(PROTOC_GEN_GO_GRPC_STAMP) ## Fail if the committed Go stubs differ from freshly generated ones
	@tmp=$$(mktemp -d); \
	$(call go_protoc,$$tmp) && \
	diff -r $$tmp/$(GO_GEN_PKG) $(GO_DIR)/$(GO_GEN_PKG) \
		&& echo "go-proto-check: generated Go code is fresh" \
		|| { echo "go-proto-check: Go stubs are stale; run make go-proto"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp

.PHONY: go-lint
go-lint: ## gofmt (no file may need formatting) and go vet on the Go client
	@out=$$(cd $(GO_DIR) && gofmt -l .); \
	test -z "$$out" || { echo "gofmt: unformatted files in $(GO_DIR):"; echo "$$out"; exit 1; }
	cd $(GO_DIR) && $(GO) vet ./...

.PHONY: go-test
go-test: $(VENV)/.installed ## Go client tests: unit tests, and integration tests against a real server
	cd $(GO_DIR) && INTERLOCK_BIN=$(CURDIR)/$(VENV)/bin/interlock $(GO) test -count=1 ./...

.PHONY: go-worker
go-worker: ## Build the example Go agent worker into clients/go/bin/agent-worker
	cd $(GO_DIR) && $(GO) build -o bin/agent-worker ./cmd/agent-worker
