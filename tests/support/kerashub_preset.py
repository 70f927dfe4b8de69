"""A tiny real KerasHub preset (a task, its preprocessor and tokenizer with a vocabulary
asset, the backbone), and the calls that show which weights a loaded preset holds. Runs
with a Python that has keras-hub (the test's own venv), never in pytest's.

    python -m tests.support.kerashub_preset OUT_DIR SEED
saves a one-layer BERT text classifier, its weights drawn from SEED, with
`save_to_preset`, and prints `OUTPUTS {json}`: what `outputs` gives for it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "fox", "air", "gap"]
SENTENCES = ["the quick fox", "air gap"]
BERT_INPUT = {
    "token_ids": [[2, 5, 6, 7, 3, 0]],
    "segment_ids": [[0, 0, 0, 0, 0, 0]],
    "padding_mask": [[1, 1, 1, 1, 1, 0]],
}


def outputs(backbone: Any, classifier: Any) -> dict[str, Any]:
    """The backbone's pooled output on BERT_INPUT and the classifier's logits on
    SENTENCES (through its preprocessor and tokenizer), as plain lists."""
    import keras
    import numpy as np

    given = {k: np.array(v, dtype="int32") for k, v in BERT_INPUT.items()}
    pooled = keras.ops.convert_to_numpy(backbone(given)["pooled_output"])
    logits = np.asarray(classifier.predict(SENTENCES, verbose=0))
    return {"pooled_output": pooled.tolist(), "logits": logits.tolist()}


def main(out: str, seed: int) -> None:
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY),
        num_layers=1,
        num_heads=1,
        hidden_dim=4,
        intermediate_dim=8,
        max_sequence_length=8,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    classifier = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=preprocessor
    )
    classifier.save_to_preset(out)
    print("OUTPUTS " + json.dumps(outputs(backbone, classifier)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
