"""The namespaces load their names on first use: reading data, exporting or benchmarking imports
no TFMOT (about a second and a thousand modules), using a name that needs TFMOT still works, and
a saved ``.keras`` model with tfcompress layers loads after ``import tfcompress`` alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

#: imports that must not load TFMOT (the light paths: `tfcompress bench`, export, reading data)
LIGHT = (
    "tfcompress.callbacks",
    "tfcompress.data",
    "tfcompress.distillation",
    "tfcompress.distillation.losses",
    "tfcompress.evaluation",
    "tfcompress.evaluation.benchmarking",
    "tfcompress.export",
    "tfcompress.export.runtime",
    "tfcompress.models",
    "tfcompress.pruning",
    "tfcompress.quantization",
    "tfcompress.quantization.embedding",
)

#: records who imports TFMOT first (the chain of tfcompress modules), without blocking it
_TRACER = """
import importlib.abc, sys, traceback
FIRST = []
class _Tracer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow_model_optimization" and not FIRST:
            files = [f.filename for f in traceback.extract_stack()]
            FIRST.append([f.rsplit("tfcompress", 1)[-1] for f in files if "tfcompress/" in f])
        return None
sys.meta_path.insert(0, _Tracer())
"""


def _run(code: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_light_imports_load_no_tfmot_and_names_that_need_it_still_work():
    result = _run(
        _TRACER
        + f"""
import importlib, json
for name in {LIGHT!r}:
    importlib.import_module(name)
light = "tensorflow_model_optimization" in sys.modules
chain = FIRST[0] if FIRST else []

import numpy as np
import tfcompress
from tfcompress._keras import keras
quantize = tfcompress.quantization.quantize  # the first name that needs TFMOT
inputs = keras.Input((4,))
model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8)(inputs)))
qat = quantize(model)
x = np.ones((3, 4), "float32")
print(json.dumps({{
    "light": light,
    "chain": chain,
    "after_use": "tensorflow_model_optimization" in sys.modules,
    "quantized": tfcompress.quantization.is_quantized(qat),
    "shape": list(qat(x).shape),
    "strip_is_callable": callable(tfcompress.quantization.strip),
    "prune": tfcompress.pruning.prune is tfcompress.prune,
}}))
"""
    )
    assert result["light"] is False, f"TFMOT is imported through {result['chain']}"
    assert result["after_use"] is True
    assert result["quantized"] is True and result["shape"] == [3, 2]
    assert result["strip_is_callable"] and result["prune"]


def test_saved_models_with_tfcompress_layers_load_after_import_tfcompress(tmp_path):
    """Keras finds our registered layers (models.layers, QuantizedEmbedding) when the loader is
    reached through the lazy namespaces: export.load_variant and the benchmark's loader."""
    from tfcompress import data, models, quantization

    task = data.load_task("ctr", n_samples=200, seed=0)
    model = models.dcn(task.schema, size="student")
    paths = {k: tmp_path / f"{k}.keras" for k in ("dcn", "qemb", "vocab", "qr", "fused")}
    model.save(paths["dcn"])
    quantization.quantize_embeddings(model).save(paths["qemb"])
    # the layers of tfcompress.embeddings and of the fused front end (export.fuse_layers)
    from tfcompress.embeddings import compositional_embeddings, count_ids, prune_vocabulary
    from tfcompress.export.fuse import fuse_embeddings

    counts = count_ids(model, task.train)
    prune_vocabulary(model, counts, min_count=2)[0].save(paths["vocab"])
    compositional_embeddings(model, mode="qr", tables=["emb_user_id"])[0].save(paths["qr"])
    fuse_embeddings(model)[0].save(paths["fused"])
    result = _run(
        f"""
import json, sys
import tfcompress
paths = {json.dumps({k: str(v) for k, v in paths.items()})}
layers = {{
    k: sorted({{type(layer).__name__ for layer in tfcompress.export.load_variant(p).model.layers}})
    for k, p in paths.items()
}}
from tfcompress.evaluation.benchmarking import load_variant
load_variant(paths["qemb"])
print(json.dumps({{"layers": layers, "tfmot": "tensorflow_model_optimization" in sys.modules}}))
"""
    )
    assert "QuantizedEmbedding" in result["layers"]["qemb"]
    assert "QREmbedding" in result["layers"]["qr"] and "Sequential" in result["layers"]["vocab"]
    assert "FusedGatherIds" in result["layers"]["fused"]
    assert "Embedding" in result["layers"]["dcn"]
    assert result["tfmot"] is False
