"""compress's depth axis: ``Candidate(depth=n)`` drops the last n residual blocks
(``drop_blocks``) before the shrink, fine-tunes distilling from the teacher, and is tried for the
latency and size objectives after the bisection while it keeps quality. The tiny model: a
2-block BST (8 wide) on a small simulated ctr task."""

from __future__ import annotations

import hashlib
import json

import pytest
from search_helpers import strategy_for

from tfcompress import data
from tfcompress._compat import interpreter_ops
from tfcompress._keras import keras
from tfcompress.export import load_variant
from tfcompress.models.builders import sequence_transformer
from tfcompress.search import strategy
from tfcompress.search.accuracy_aware import compress
from tfcompress.search.space import Candidate
from tfcompress.search.strategy import SearchStrategy

_SIZE = {"embedding_dim": 8, "num_heads": 2, "ff_dim": 16, "mlp_units": (8,), "dropout": 0.0}


def test_the_depth_field_is_validated_named_and_keeps_old_cache_keys():
    c = Candidate(shrink=0.5, depth=1, quantization="dynamic")
    assert c.name == "drop1+shrink0.50+dynamic" and Candidate(depth=2).name == "drop2"
    assert c.get_config()["depth"] == 1 and Candidate.from_config(c.get_config()) == c
    assert Candidate(depth=1).trains and Candidate(depth=1).shrinks == (0.0, None, 1)
    assert Candidate(shrink=0.5).shrinks == (0.5, None)
    # pinned from the code before the field existed (as test_tables_axis pins its own)
    old = Candidate(
        shrink=0.5, embeddings=0.75, quantization="int8", rows="int4_compact", skip=("cross_0",)
    )
    assert (
        old.name == "shrink0.50+emb0.75+int4crows+int8~e8218c" and "depth" not in old.get_config()
    )
    config = json.dumps(old.get_config(), sort_keys=True).encode()
    assert hashlib.sha256(config).hexdigest() == (
        "815462fcc1f96d84a6b8f8c5dcd66c749748590047f4485b76b69f05897bd18b"
    )
    for bad in (-1, 1.0, True, "1"):
        with pytest.raises(ValueError, match=r"`depth` must be an int >= 0"):
            Candidate(depth=bad)


def _batch_matmuls(path: str) -> int:
    interpreter = load_variant(path, verify=False).interpreter
    return sum(op["op_name"] == "BATCH_MATMUL" for op in interpreter_ops(interpreter))


@pytest.fixture(scope="module")
def depth_search(tmp_path_factory):
    task = data.load_task("ctr", n_samples=1200, seed=0, batch_size=64)
    keras.utils.set_random_seed(0)
    model = sequence_transformer(task.schema, size={**_SIZE, "num_blocks": 2})
    model.compile("adam", "binary_crossentropy")
    model.fit(task.train, epochs=1, verbose=0)
    out = tmp_path_factory.mktemp("depth_axis")
    with pytest.MonkeyPatch.context() as patch:  # the depth axis only
        patch.setattr(SearchStrategy, "embedding_axis", lambda self, base: None)
        patch.setattr(SearchStrategy, "fused", lambda self, base: None)
        patch.setattr(strategy, "PTQ_ORDER", ("dynamic",))
        result = compress(
            model,
            task.train,
            validation_data=task.validation,
            max_loss=0.5,  # every candidate keeps: the axis goes as deep as it may
            objective="latency",
            epochs=1,
            steps=1,
            max_shrink=0.3,  # no shrink ratio tried: the axis starts from the original
            repeats=1,
            progress=False,
            output_dir=out,
        )
    return model, out, result


def test_a_dropped_block_candidate_is_trained_exported_and_judged(depth_search):
    model, out, result = depth_search
    by_name = {r.name: r for r in result.candidates if r.stage == "export"}
    keras_stage = [r for r in result.candidates if r.stage == "keras"]
    assert [r.candidate for r in keras_stage] == [Candidate(depth=1)] and keras_stage[0].accepted
    assert "drop2" not in by_name  # one of the two blocks is always kept
    assert result.trained == 1  # the one distilled fine-tune of the dropped model
    (saved,) = out.rglob("drop1@keras/model.keras")  # the float model the exports start from
    built = keras.models.load_model(saved, compile=False)
    names = {layer.name for layer in built.layers}
    assert "block_0_mha" in names and not any(n.startswith("block_1_") for n in names)
    assert model.count_params() - built.count_params() == sum(
        model.get_layer(n).count_params() for n in {layer.name for layer in model.layers} - names
    )
    for dropped, full in (
        (by_name["drop1"], result.baseline),
        (by_name["drop1+dynamic"], by_name["ptq-dynamic"]),
    ):
        assert dropped.difference is not None and dropped.path
        assert _batch_matmuls(dropped.path) < _batch_matmuls(full.path)
        assert dropped.bytes < full.bytes
    assert "depth" not in result.skipped


@pytest.mark.parametrize(
    "objective, tried",
    [("latency", True), ("latency_b1", True), ("size", True), ("flops", False)],
)
def test_the_objectives_that_try_dropping_blocks(tmp_path, monkeypatch, objective, tried):
    """Latency: a block's per-row time no width shrink removes; size: the base the table
    layouts start from (the BST reached 10.76x only with a block dropped). FLOPs: not tried."""
    task = data.load_task("ctr", n_samples=300, seed=0, batch_size=64)
    model = sequence_transformer(task.schema, size={**_SIZE, "num_blocks": 3})
    x, y = next(iter(task.validation))
    x = {k: v.numpy() for k, v in x.items()}
    search, _ = strategy_for(model, task.train, (x, y.numpy()), tmp_path, objective=objective)
    built: list[Candidate] = []

    def run(self, candidate, export=True):
        built.append(candidate)
        return type("Kept", (), {"accepted": candidate.depth < 2})()

    monkeypatch.setattr(SearchStrategy, "run", run)
    monkeypatch.setattr(SearchStrategy, "quantized", lambda self, base: None)
    chosen = search.depth_axis(Candidate(shrink=0.5))
    if tried:  # depth 1 keeps, depth 2 loses: the deepest keeper is depth 1
        assert [c.depth for c in built] == [1, 2] and chosen == Candidate(shrink=0.5, depth=1)
    else:
        assert built == [] and chosen == Candidate(shrink=0.5)
