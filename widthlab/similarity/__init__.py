"""Representation similarity (Nguyen, Raghu & Kornblith, ICLR 2021): do wide and deep networks
learn the same things? CKA between every pair of layers, block structure, PC1, cross-seed
similarity and error patterns. The CKA itself (every estimator, all layer pairs at once) is
:mod:`widthlab.cka`; ``docs/stages/similarity.md`` states the method, outputs and claims.

Modules (the house shape; this file imports nothing):

- :mod:`.settings` — estimator codes and names (torch-free).
- :mod:`.measure` — per-model and cross-model CKA tables, PC1 shares, linear probes (torch).
- :mod:`.blocks` — block detection in a CKA matrix; :mod:`.errors` — agreement and per-class
  tests (numpy, scipy).
- :mod:`.summary` — tables across models (torch-free).
- :mod:`.claims` — the headline rows, every verdict through :func:`widthlab.headline.claim`.
- :mod:`.jobs` — which models are compared, decided from ids while the DAG is built.
- :mod:`.figures` — tables → figures (torch-free).
"""
