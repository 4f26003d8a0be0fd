"""Training and evaluation of the models the product ships (not part of the product: the product
imports nothing from here). Run from the repository root:

    .venv/bin/python -m training.make_nlu_data           # templates (data/nlu_templates/) -> data/nlu_*.jsonl
    .venv-train/bin/python -m training.finetune_encoder  # intent encoder's upper layers (torch)
    .venv/bin/python -m training.train_intents           # intent classifier
    .venv/bin/python -m training.train_emotion           # anger classifier

`make train-nlu` runs the first three. What they write (models/nlu/, models/perception/) is read at
run time through voiceagent.model_files and voiceagent.dialog.nlu_model.
"""
