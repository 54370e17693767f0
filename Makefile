# The two commands of the README: `make demo` and `make test`. Both create the
# virtualenv and install what they need on a fresh machine (Python 3.11).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# TF_WHEEL=gpu installs tensorflow[and-cuda] instead of tensorflow-cpu.
TF_WHEEL ?= cpu
DEMO_DIR ?= saved_models/demo_pets_fcn8s

.PHONY: demo test lint format smoke bench bench-torch clean install

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-$(TF_WHEEL): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --quiet -e ".[$(TF_WHEEL),test,examples,dev,keras-cv,proposals,onnx,litert]"
	# The `serving` extra (tensorflow-serving-api) requires the `tensorflow`
	# wheel by name, which would pull in a second TensorFlow beside
	# tensorflow-cpu: install it without dependencies (it needs only
	# protobuf and grpcio, already here).
	$(PY) -m pip install --quiet --no-deps "tensorflow-serving-api>=2.21,<3"
	# The `keras-hub` extra likewise (through tensorflow-text): keras-hub
	# without dependencies, then tokenizers, which its import needs (keras,
	# absl-py, regex, rich and kagglehub are already here; sentencepiece
	# only serves its tokenizers).
	$(PY) -m pip install --quiet --no-deps "keras-hub>=0.32,<1"
	$(PY) -m pip install --quiet "tokenizers>=0.20"
	touch $@

install: $(VENV)/.installed-$(TF_WHEEL)

demo: install
	$(PY) examples/segmentation.py train --dataset pets \
	    --data-dir sample_data/oxford_pets --model fcn8s \
	    --image-size 128 --epochs 30 --output-dir $(DEMO_DIR)
	$(PY) examples/segmentation.py evaluate --dataset pets \
	    --data-dir sample_data/oxford_pets --image-size 128 \
	    --saved-model $(DEMO_DIR)/serving/1

# Two pytest workers (pytest-xdist), whole files per worker so that module
# fixtures are built once: tracing and XLA compilation are single-threaded,
# so a second process keeps both cores busy. PYTEST_WORKERS=0 runs in one.
PYTEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15 \
	    $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

smoke: install
	$(PY) -m pytest tests/examples -q

# The benchmarks again, with torch/torchvision importable for the reference
# columns: a separate venv (torch is never a dependency of the package) that
# sees the main venv's packages (its own .pth files included, so the
# editable keras_segattn) through `site.addsitedir` in a .pth file.
TORCH_VENV ?= .venv-torch
$(TORCH_VENV)/.installed: $(VENV)/.installed-$(TF_WHEEL)
	$(PYTHON) -m venv $(TORCH_VENV)
	$(PY) -c 'import sysconfig; print("import site; site.addsitedir(%r)" \
	    % sysconfig.get_paths()["purelib"])' \
	    > "$$($(TORCH_VENV)/bin/python -c 'import sysconfig; \
	    print(sysconfig.get_paths()["purelib"])')/keras_segattn_venv.pth"
	$(TORCH_VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1
	touch $@

bench-torch: $(TORCH_VENV)/.installed
	$(TORCH_VENV)/bin/python benchmarks/bench_grid_sample.py
	$(TORCH_VENV)/bin/python benchmarks/bench_roi_ops.py

# benchmarks/REPORT.md (and the README's speed tables), generated from one
# run of the op, train-step and serving benchmarks, with the torch /
# torchvision reference columns (builds .venv-torch when needed).
# BENCH_ARGS="--quick" for a shorter run, "--note '...'" for a header line.
bench: $(TORCH_VENV)/.installed
	$(TORCH_VENV)/bin/python benchmarks/report.py $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache runs
	find saved_models -mindepth 1 -maxdepth 1 ! -name README.md \
	    ! -name pets_fcn ! -name camvid_fcn ! -name stn_cluttered_mnist \
	    ! -name nmt_spa_eng ! -name caption_digits ! -name caption_digits_hard ! -name digits_mask_rcnn \
	    ! -name digits_mask_rcnn_fpn ! -name digits_yolo \
	    ! -name pets_localization ! -name sds_digits -exec rm -rf {} +
