"""The run engine: what main.py, test.py and the scripts drive.

`loop` (a training epoch, the inference pass, evaluation of a set), `run` (seeding, loaders, text
embeddings), `checkpoint`, `selection` (--select_on val), `paths` (a run's files and lock), `report` (logs,
CSV, metrics JSON), `optim`, `compiled` (--compile), `detector` (the Python API behind scripts/localize.py).
"""
