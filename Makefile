# Everything installs from nothing into .venv; re-running is fast once the stamp is newer than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
# torch first: on these machines torch==2.13.0 is a CPU build on disk; set TORCH_SPEC for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= demo-run

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/latentfeed demo --workdir $(WORKDIR)

# The whole suite, every tier (pytest's options, workers and per-test timeouts are in pyproject.toml).
test: install
	$(BIN)/python -m pytest -q

# The quick loop: building blocks, data rules and the estimator; no Prefect, no pipeline run.
test-fast: install
	$(BIN)/python -m pytest -q -m "unit or data or model"

BENCHES := commands train_throughput encode_throughput validate_throughput ingest_memory downstream downstream_e2e \
	training_set latent_dataset serving retrieval backfill_throughput gpu_train train_scale lr_rule real_data anomaly_scores

# The benchmarks' real tables and baselines (statsmodels, PyOD) come with the bench extra.
bench: install
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	for b in $(BENCHES); do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache
