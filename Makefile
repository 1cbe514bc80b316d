# Everything installs from nothing into .venv; re-running is fast once the stamp is newer than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
# torch first: on these machines torch==2.13.0 is a CPU build on disk; set TORCH_SPEC for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= demo-run

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/latentfeed demo --workdir $(WORKDIR)

test: install
	$(BIN)/python -m pytest -q

bench: install
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache
