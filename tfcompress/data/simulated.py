"""TEMPORARY scaffold: replaced by the simulated world implementation."""


class World:
    pass


def load_task(*a, **k):
    raise NotImplementedError


ctr = retrieval = profile = load_task
