# The two commands of the README:
#   make run    set up .venv, build the sample district if missing, run the main job -> out/
#   make test   set up .venv and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SAMPLE := data/sample_district/project.yaml
OUT    ?= out

.PHONY: setup run sample test bench app clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,dask]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

$(SAMPLE): | $(STAMP)
	$(PY) -m gis sample --out data/sample_district --seed 42 --scale small

sample: $(SAMPLE)

run: $(STAMP) $(SAMPLE)
	$(PY) -m gis run --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m benchmarks

app: $(STAMP) $(SAMPLE)
	$(VENV)/bin/streamlit run app.py

clean:
	rm -rf $(OUT) .pytest_cache benchmarks/_work
