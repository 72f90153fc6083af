"""Batch jobs over a whole corpus on Dask ``distributed``: ``ccrl index``.

A top-level package of its own, beside ``service/`` (the runtime) and ``training/`` (torch): the
indexing job runs the runtime scorer on Dask workers, so it may import ``service`` and the
torch-free corners of ``training`` (the CG rule, the submission writer) but never torch, and
``service`` never imports it (the service does not depend on Dask).
"""
