"""Benchmarks for torch_sinr: run each as ``python -m benchmarks.NAME`` from the repo root."""
