# hpcai: thin targets over scripts/ and the `hpcai` CLI. `make help` lists them.
SITE ?= local
RUNTIME ?= docker
VENV := .venv
HPCAI := $(VENV)/bin/hpcai
PYTEST_ARGS ?=
RECIPES_OUT ?= recipes
DOCS_OUT ?= docs

.PHONY: help setup demo test test-singularity test-gpu-image lint recipes constraints docs image base-image bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install system packages and create .venv (idempotent; fast when done)
	@scripts/install-system.sh
	@scripts/setup-venv.sh

demo: setup ## the main job on the local site
	@scripts/demo.sh

test: setup ## run the whole test suite, the Apptainer suite included
	scripts/apptainer-harness.sh prepare
	HPCAI_TEST_SINGULARITY=1 $(VENV)/bin/pytest $(PYTEST_ARGS)

test-singularity: setup ## only the Apptainer suite: harness, SIF of the local image, hybrid-MPI runs
	scripts/apptainer-harness.sh prepare
	HPCAI_TEST_SINGULARITY=1 $(VENV)/bin/pytest tests/singularity $(PYTEST_ARGS)

test-gpu-image: setup ## build and verify the delta GPU image, Docker and SIF (about 80 min fresh; not in `make test`)
	scripts/apptainer-harness.sh prepare
	$(VENV)/bin/pytest -m gpu_image tests/build/test_gpu_image.py $(PYTEST_ARGS)

lint: setup ## ruff check and ruff format --check over the package, tests and bench
	$(VENV)/bin/ruff check hpcai_tf tests bench
	$(VENV)/bin/ruff format --check hpcai_tf tests bench

recipes: setup ## render recipes/<site>/ and the generated docs from the catalog (RECIPES_OUT=, DOCS_OUT= elsewhere)
	$(HPCAI) render --out $(RECIPES_OUT)
	$(HPCAI) docs --out $(DOCS_OUT)

constraints: setup ## re-resolve containers/constraints/<site>.txt with pip (needs PyPI), then render as `recipes`
	$(HPCAI) constraints
	$(HPCAI) render
	$(HPCAI) docs

image: setup ## build the image of SITE (default local) with RUNTIME (docker|singularity)
	@scripts/dockerd.sh start >/dev/null
	$(HPCAI) build --site $(SITE) --runtime $(RUNTIME)

base-image: setup ## make the local base image with debootstrap (cached by name)
	@scripts/dockerd.sh start >/dev/null
	$(HPCAI) base --site $(SITE)

bench: setup ## run the benchmarks in bench/ and print their ratios
	@scripts/bench.sh

clean: ## remove what the kit created: images, build caches, temp roots, .venv
	-@[ -x $(HPCAI) ] && $(HPCAI) clean
	-@scripts/dockerd.sh stop
	rm -rf $(VENV) .cache build runs derived .pytest_cache .ruff_cache
