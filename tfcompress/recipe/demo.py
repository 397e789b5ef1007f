"""The demo recipe (``recipes/demo.toml``): distill a BST teacher into a DCN student, compress
the student accuracy-aware (``kind = "auto"``, within 0.002 AUC), and, by hand, prune, QAT,
int8 TFLite.

Example:
    >>> [stage.kind for stage in demo_recipe(samples=2_000).stages]
    ['distill', 'auto', 'prune', 'quantize']
"""

from __future__ import annotations

from tfcompress.recipe._files import check_int
from tfcompress.recipe.recipes import Recipe
from tfcompress.recipe.specs import (
    AutoStage,
    BenchmarkSpec,
    DataSpec,
    DistillStage,
    ExportSpec,
    ModelSpec,
    PruneStage,
    QuantizeStage,
)

__all__ = ["DEMO_MAX_LOSS", "DEMO_SPLIT", "demo_recipe"]

#: the AUC the demo's auto stage may lose against the student's float export
DEMO_MAX_LOSS = 0.002
#: train / validation / test fractions: 150k samples give 48k to train on (as 60k at 0.8 did)
#: and 51k each to judge and test on, which resolves DEMO_MAX_LOSS (the 95% CI of ΔAUC of the
#: student's own shrunk / int8 copy is ~±0.001 there, ~±0.003 on the 6k of a 0.1 split)
DEMO_SPLIT = (0.32, 0.34, 0.34)


def demo_recipe(
    *,
    samples: int = 150_000,
    teacher_epochs: int = 8,
    epochs: int = 2,
    seed: int = 0,
    name: str = "demo",
) -> Recipe:
    """The demo run: distill a BST teacher into a DCN student; compress the student with
    ``compress`` (the ``auto`` stage: the smallest / fastest export within ``DEMO_MAX_LOSS``
    AUC of its float export, by the paired CI); and by hand: prune 70 %, QAT, int8 TFLite.

    The auto stage hands the student on unchanged, so the hand-made prune and QAT stages start
    from the same model and the report compares both. Pruning, QAT and every fine-tune of the
    search distil from the teacher.

    ``recipes/demo.toml`` is this recipe with the default arguments. The learning rates and
    distillation settings: teacher Adam 2e-3 (as ``benchmarks/distill.py``), student 5e-3,
    student_loss_weight 0.7 (alpha 0.3), temperature 1 (test AUC of the distilled student 0.7235
    vs 0.7177 at alpha 0.5 and 0.7133 at alpha 0.9 / temperature 2, one run each, same teacher);
    pruning fine-tunes at 1e-3 (AUC 0.7046 after 2 epochs, vs 0.7019 at 2e-3 for 3 epochs and
    0.6949 at 5e-4 for 3), QAT at 5e-4; both fine-tune with the teacher (``distill=True``: int8
    logloss 0.458 vs 0.475 on the labels alone; AUC 0.705-0.710 over two runs vs 0.705, within
    run-to-run noise). These were measured before the training order became a function of the
    seed and step (issue 14).

    Args:
        samples: simulated CTR impressions (>= 100), split ``DEMO_SPLIT`` (train, validation,
            test).
        teacher_epochs: most epochs of teacher training (>= 1; the best by validation AUC is
            kept).
        epochs: fine-tune epochs of the auto (each candidate), prune and quantize stages
            (>= 1); distillation (and the student trained alone for comparison) gets
            ``2 * epochs + 2``.
        seed: data and run seed (>= 0).
        name: the run name.

    Returns:
        The recipe.

    Raises:
        RecipeError: an argument out of range (the message names it).

    Example:
        >>> [stage.kind for stage in demo_recipe(samples=2_000).stages]
        ['distill', 'auto', 'prune', 'quantize']
    """
    for arg, value, minimum in (
        ("samples", samples, 100),
        ("teacher_epochs", teacher_epochs, 1),
        ("epochs", epochs, 1),
        ("seed", seed, 0),
    ):
        check_int(value, arg, minimum=minimum, example=f"{arg}={max(minimum, 1)}")
    return Recipe(
        name=name,
        model=ModelSpec(
            name="sequence_transformer", size="teacher", epochs=teacher_epochs, learning_rate=2e-3
        ),
        data=DataSpec(task="ctr", samples=samples, seed=seed, batch_size=256, split=DEMO_SPLIT),
        stages=(
            DistillStage(
                student=ModelSpec(name="dcn", size="student"),
                epochs=2 * epochs + 2,
                learning_rate=5e-3,
                temperature=1.0,
                student_loss_weight=0.7,
                train_alone=True,
            ),
            AutoStage(
                max_loss=DEMO_MAX_LOSS,
                # the smallest model: for the 50k-parameter student, int8 is not faster than
                # float at batch 256 under XNNPACK (0.42 vs 0.27 ms measured), so a latency
                # objective keeps the float file; on a phone the download size is what counts
                objective="size",
                epochs=epochs,
                learning_rate=1e-3,
                student_loss_weight=0.7,
            ),
            PruneStage(sparsity=0.7, epochs=epochs, learning_rate=1e-3, distill=True),
            QuantizeStage(epochs=epochs, learning_rate=5e-4, distill=True),
        ),
        export=ExportSpec(tflite=("int8",), saved_model=True, jit_compile=True),
        benchmark=BenchmarkSpec(batch_sizes=(1, 256), repeats=30),
        seed=seed,
    )
