# `make demo` runs the offline quickstart; `make test` runs the tests. Both set up .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: setup demo demo-local test test-fast bench clean constraints

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# the CPU build of torch first: sentence-transformers would otherwise pull GBs of CUDA
	$(BIN)/pip install "torch==2.13.0" || echo "torch 2.13.0 not available here: the full-MiniLM embedder stays optional"
	$(BIN)/pip install -c constraints.txt -e ".[dev,embed,hf]"
	# optional engines: tests that need them skip with a message when they are missing
	$(BIN)/pip install -c constraints.txt -e ".[ray]" || echo "warning: ray did not install; Ray engine tests will skip"
	# llama.cpp built for a baseline x86-64 CPU (AVX2/FMA), never for the build machine's:
	# a native build on an AVX-512/AMX Xeon dies at the first completion elsewhere (and there).
	# --no-cache-dir: a wheel cached by an earlier native build must not be reused.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --no-cache-dir -c constraints.txt -e ".[local]" || echo "warning: llama-cpp-python did not build; local-teacher tests will skip"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/reasonmill run configs/quickstart.yaml
	$(BIN)/python -m reasonmill.tools.check_export out/quickstart/am.jsonl

# the quickstart plus a local llama.cpp teacher (SmolLM2-135M) for problems without responses
demo-local: $(STAMP)
	$(BIN)/reasonmill run configs/quickstart_local.yaml
	$(BIN)/python -m reasonmill.tools.check_export out/quickstart-local/am.jsonl

test: $(STAMP)
	$(BIN)/python -m pytest -q -x --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf runs out bench/_work

# after a green `make test`: record the versions it passed with (commit the file with that run)
constraints: $(STAMP)
	{ head -3 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v -e "^reasonmill" -e "^torch==" -e "@ file"; } > constraints.new
	mv constraints.new constraints.txt
