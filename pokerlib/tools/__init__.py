"""Tooling around the library: the runner, the report renderer, the benchmark and the command line.

Nothing here decides a run's results, so the code version that identifies a run (tools.runner)
hashes the modules of `pokerlib/` itself and the notebook, and not this folder.
"""
