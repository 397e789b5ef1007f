"""File bytes of `export_tflite(embeddings=...)` on a 100,000-id QR table and a 100,000-id
mixed-dimension table, with the mixed table's id -> rank map stored as int32 (the old layout)
and blocked (uint8 codes + int32 bases), and detached (``detach_vocabulary``: the map beside
the model, which reads ranks), side by side in one run (docs/embeddings.md,
"Storing these tables as int8/int4 rows at export").

The model: ids (4 a row) read by a QR table (100,000 x 16, m = 317, "mul", rows N(0, 0.3))
and the same ids, as a second input (so its map can be detached), by a mixed table (blocks 1% /
9% / 90% of widths 16 / 4 / 1, from a N(0, 0.1) 100,000 x 16 table and Zipf(1.3) counts); both
flattened and concatenated. Columns: the .tflite file's bytes; x the float file with the int32
map (the layout before the blocked map); ``gathered tables``: bytes of every constant a GATHER
reads (tables, row scales) less the id map; the id map's bytes (read by a GATHER too); max
|LiteRT - Keras float| over 4,096 lookups of both tables.

    python benchmarks/table_storage.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from embeddings_scale import gathered_bytes  # noqa: E402

import tfcompress  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TF builds tf.keras)
from tfcompress import export  # noqa: E402
from tfcompress._keras import keras  # noqa: E402
from tfcompress.embeddings.compositional import QREmbedding  # noqa: E402
from tfcompress.embeddings.detach import detach_vocabulary  # noqa: E402
from tfcompress.embeddings.mixed_dim_layer import MixedDimEmbedding  # noqa: E402

V, D, SEQ, M = 100_000, 16, 4, 317
MODES = ["float", "int8_row", "int8", "int4", "int4_compact"]


def build(id_map: str) -> keras.Model:
    rng = np.random.default_rng(0)
    emb = keras.layers.Embedding(V, D)
    emb.build((None,))
    emb.set_weights([rng.normal(0, 0.1, (V, D)).astype("f4")])
    counts = rng.zipf(1.3, V).astype(float)
    mixed = MixedDimEmbedding.from_embedding(
        emb, counts, (0.01, 0.09, 0.9), (16, 4, 1), name="mixed", id_map=id_map
    )
    qr = QREmbedding(V, D, M, name="qr")
    ids = [keras.Input((SEQ,), dtype="int32", name=n) for n in ("ids", "mixed_ids")]
    outs = [keras.layers.Flatten()(layer(x)) for layer, x in zip((qr, mixed), ids, strict=True)]
    model = keras.Model(ids, keras.layers.Concatenate()(outs))
    qr.set_weights([rng.normal(0, 0.3, w.shape).astype("f4") for w in qr.weights])
    return model


def main() -> int:
    ids = np.random.default_rng(1).integers(0, V, (1024, SEQ)).astype("int32")
    print(
        "| id map | `embeddings` | file bytes | x float | gathered tables | id map | max |diff| |"
    )
    print("|---|---|---|---|---|---|---|")
    base = 0
    with tempfile.TemporaryDirectory() as tmp:
        for id_map in ("int32", "blocked", "detached"):
            model = build("blocked" if id_map == "detached" else id_map)
            feed = {"ids": ids, "mixed_ids": ids}
            keras_out = model.predict(feed, verbose=0)
            if id_map == "detached":  # the map beside the model: it reads ranks
                model, maps = detach_vocabulary(model)
                feed = {"ids": ids, "mixed_ids": maps["mixed_ids"][ids]}
            map_bytes = model.get_layer("mixed").map_bytes()
            for mode in MODES:
                path = Path(tmp) / f"{id_map}_{mode}.tflite"
                result = export.export_tflite(model, path, embeddings=mode, drift="ignore")
                out = next(iter(export.load_variant(result.path)(feed).values()))
                base = base or result.bytes
                diff = float(np.abs(out - keras_out).max())
                tables = gathered_bytes(result.path) - map_bytes
                print(
                    f"| {id_map} | `{mode!r}` | {result.bytes:,} | {base / result.bytes:.2f} | "
                    f"{tables:,} | {map_bytes:,} | {diff:.1e} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
