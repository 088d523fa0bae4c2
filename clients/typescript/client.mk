# The TypeScript client (clients/typescript), included by the top-level Makefile.
# Paths are relative to the repository root; $(PY), $(VENV) and $(PROTOS) come
# from the top-level Makefile.

TS_DIR := clients/typescript
TS_GEN := $(TS_DIR)/src/gen
TS_BIN := $(TS_DIR)/node_modules/.bin
# npm ci empties node_modules first, so the stamp goes with it.
TS_STAMP := $(TS_DIR)/node_modules/.ts-install.stamp
TS_PROTO_OPTS := outputServices=grpc-js,esModuleInterop=true,useOptionals=messages,env=node,useExactTypes=false,exportCommonSymbols=false
# $(call ts_protoc,OUT_DIR): generate the TypeScript code of $(PROTOS) into OUT_DIR.
ts_protoc = $(PY) -m grpc_tools.protoc -I protos \
	--plugin=protoc-gen-ts_proto=$(TS_BIN)/protoc-gen-ts_proto \
	--ts_proto_out=$(1) --ts_proto_opt=$(TS_PROTO_OPTS) $(PROTOS)

$(TS_STAMP): $(TS_DIR)/package-lock.json $(TS_DIR)/package.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund
	touch $@

.PHONY: ts-install ts-proto ts-proto-check ts-lint ts-build ts-test

ts-install: $(TS_STAMP) ## TypeScript client: npm ci (only when package-lock.json changed)

ts-proto: $(VENV)/.installed $(TS_STAMP) ## TypeScript client: regenerate src/gen from protos/ (ts-proto)
	@tmp=$$(mktemp -d); \
	$(call ts_protoc,$$tmp) && rm -rf $(TS_GEN) && mv $$tmp $(TS_GEN) \
		|| { rm -rf $$tmp; exit 1; }
	@echo "ts-proto: regenerated $(TS_GEN)"

ts-proto-check: $(VENV)/.installed $(TS_STAMP) ## TypeScript client: fail if the committed src/gen is stale
	@tmp=$$(mktemp -d); \
	$(call ts_protoc,$$tmp) && \
	diff -r $$tmp $(TS_GEN) \
		&& echo "ts-proto-check: generated code is fresh" \
		|| { echo "ts-proto-check: $(TS_GEN) is stale; run make ts-proto"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp

ts-lint: $(TS_STAMP) ## TypeScript client: type-check everything (tsc --noEmit)
	$(TS_BIN)/tsc -p $(TS_DIR) --noEmit

ts-build: $(TS_STAMP) ## TypeScript client: compile to clients/typescript/dist
	rm -rf $(TS_DIR)/dist
	$(TS_BIN)/tsc -p $(TS_DIR)

ts-test: ts-build $(VENV)/.installed ## TypeScript client: unit and integration tests (node --test, real server)
	cd $(TS_DIR) && INTERLOCK_BIN=$(CURDIR)/$(VENV)/bin/interlock \
		INTERLOCK_POLICY_DIR=$(CURDIR)/policies node --test --test-reporter=spec dist/test/
