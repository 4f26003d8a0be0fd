"""The trained model files the product ships (`make train-nlu` and training/ write them), and the
identity of the tuned intent encoder that ties the classifiers to it: a classifier only fits the
encoder it was fitted on.

Its own module, importing nothing of the product's packages, because both dialog (the intent
classifier) and perception (the anger classifier) check it, and dialog imports perception.
"""

from __future__ import annotations

import hashlib

from . import paths

INTENT_CLASSIFIER = paths.PROJECT_ROOT / "models" / "nlu" / "intent_classifier.npz"
INTENT_ENCODER_LAYERS = paths.PROJECT_ROOT / "models" / "nlu" / "intent_encoder_layers.npz"
ANGER_CLASSIFIER = paths.PROJECT_ROOT / "models" / "perception" / "anger_classifier.npz"


def encoder_sha() -> str:
    """The tuned intent-encoder layers a classifier was fitted on (stored in each classifier's file)."""
    return hashlib.sha256(INTENT_ENCODER_LAYERS.read_bytes()).hexdigest()
