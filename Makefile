# The two commands of the README:
#   make run    set up .venv, build the sample district if missing, run the main job -> out/
#   make test   set up .venv and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SAMPLE := data/sample_district/project.yaml
OUT    ?= out

.PHONY: setup fonts bytecode run sample test bench app clean

setup: $(STAMP) fonts

# A CJK font for map.png and the map sheets (Chinese text renders as boxes without one).
# Best-effort: installs fonts-noto-cjk from the Debian packages when none is present; never fails.
fonts:
	@fc-list :lang=zh family 2>/dev/null | grep -q . \
	  || { command -v apt-get >/dev/null 2>&1 && { apt-get install -y -q fonts-noto-cjk >/dev/null 2>&1 \
	       || sudo -n apt-get install -y -q fonts-noto-cjk >/dev/null 2>&1; }; } \
	  || echo "note: no CJK font installed and none could be (apt-get install fonts-noto-cjk); map sheets need one"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,dask]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

$(SAMPLE): | $(STAMP)
	$(PY) -m gis sample --out data/sample_district --seed 42 --scale small

sample: $(SAMPLE)

# Byte-compile gis/ as a (non-editable) pip install would: a run then reads .pyc files
# instead of compiling 30k lines in each process, also where PYTHONDONTWRITEBYTECODE is set.
bytecode: $(STAMP)
	@$(PY) -m compileall -q gis >/dev/null

run: $(STAMP) fonts $(SAMPLE) bytecode
	$(PY) -m gis run --out $(OUT)

test: $(STAMP) fonts
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m benchmarks

app: $(STAMP) $(SAMPLE) bytecode
	$(VENV)/bin/streamlit run app.py

clean:
	rm -rf $(OUT) .pytest_cache benchmarks/_work
