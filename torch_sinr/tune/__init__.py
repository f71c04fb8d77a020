"""Choosing and training codes: what sits above the layers and the file.

- ``finetune``: training codes and dense tensors through the grids the file stores them on;
- ``autotune``: per-layer sparsity and value bits for a quality or byte target;
- ``pipeline``: ``torch_sinr.compress``, the one call that codes, tunes and fine-tunes;
- ``baselines``: what SINR is compared with (uniform, pruned, low-rank, cast), written to files.
"""
