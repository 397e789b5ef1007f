"""TEMPORARY scaffold: replaced by the loaders implementation."""


def load_csv(*a, **k):
    raise NotImplementedError


load_libfm = load_movielens = load_csv
