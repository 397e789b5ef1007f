"""Full-integer export of Model Garden BERT (issue 17): the attention-mask adder is bounded so
the softmax input keeps a usable int8 scale."""

from __future__ import annotations

import numpy as np
from official.nlp.modeling import models as bert_models
from official.nlp.modeling import networks

import tfcompress  # noqa: F401  (tests/conftest.py imported it first: tf_keras for Model Garden)
from tfcompress import export
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras
from tfcompress.export.tflite import MASKED_SCORE

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_sequence_length=16,
)


def _padded_inputs(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Titles of 4..16 tokens, zero-padded, with their masks (what real text batches hold)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 100, (n, 16)).astype("int32")
    lengths = rng.integers(4, 17, n)
    mask = (np.arange(16)[None, :] < lengths[:, None]).astype("int32")
    return {"input_word_ids": ids * mask, "input_mask": mask, "input_type_ids": 0 * ids}


def _softmax_input_scales(path) -> list[float]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return [
        float(details[op["inputs"][0]]["quantization_parameters"]["scales"][0])
        for op in interpreter_ops(interpreter)
        if op["op_name"] == "SOFTMAX"
        and len(details[op["inputs"][0]]["quantization_parameters"]["scales"])
    ]


def test_int8_bert_softmax_input_keeps_a_usable_scale(tmp_path):
    """Model Garden's MaskedSoftmax adds -1e9 at padded positions; calibrated into int8 that gives
    the softmax input a scale of 1e9/255 = 3.9e6 and every real score quantizes to one value
    (a trained 4-layer classifier: 0.86 -> 0.40 accuracy). The export traces with -30."""
    keras.utils.set_random_seed(0)
    model = bert_models.BertClassifier(network=networks.BertEncoder(**TINY), num_classes=3)
    x = _padded_inputs()
    # a float export first: its cached trace holds -1e9, the int8 export must trace afresh
    plain = export.export_tflite(model, tmp_path / "bert_float.tflite", parity_data=x)
    result = export.export_tflite(
        model, tmp_path / "bert.tflite", "int8", representative_data=x, parity_data=x
    )
    scales = _softmax_input_scales(result.path)
    assert len(scales) == TINY["num_layers"], scales  # one quantized softmax per block
    assert max(scales) < 1.0, scales  # was 3.9e6
    assert result.options["masked_score"] == MASKED_SCORE
    # the float file keeps Model Garden's own -1e9 and matches the Keras model
    assert "masked_score" not in plain.options and plain.parity["max_abs_diff"] < 1e-4
