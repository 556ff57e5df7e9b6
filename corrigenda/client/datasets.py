"""Client methods for dataset versions and the example stream."""


class DatasetsMixin:
    pass
