"""What the search tests share: a small `compress` call that trains no shrink ratio, and a
`SearchStrategy` built directly (to call one axis of the search)."""

from __future__ import annotations

from tfcompress.search.accuracy_aware import compress
from tfcompress.search.space import SearchSettings
from tfcompress.search.strategy import SearchStrategy


def small_compress(model, train, val, out, **kwargs):
    """``compress`` with 1 epoch and 1 bisection step capped below the first ratio (0.5), so
    no shrink ratio is tried: the axes start from the original model. ``kwargs`` override."""
    settings = dict(
        validation_data=val,
        max_loss=0.01,
        objective="size",
        epochs=1,
        steps=1,
        max_shrink=0.3,
        repeats=2,
        progress=False,
        output_dir=out,
    )
    settings.update(kwargs)
    return compress(model, train, **settings)


def strategy_for(model, train, val, root, **settings):
    """A ``SearchStrategy`` of ``model`` (its own teacher) and the messages it reports."""
    messages: list[str] = []
    search = SearchStrategy(
        model,
        model,
        train,
        SearchSettings(**settings),
        root,
        val[0],
        val[1],
        batch_size=256,
        strategy=None,
        budget=None,
        report=messages.append,
    )
    return search, messages
