"""The method, knowing nothing of ``nn.Module``: w ≈ A x for a seeded random dictionary A.

- ``dictionary``: the seeded Gaussian dictionaries (generated, cached, never stored);
- ``coders``: sparse coders by name (OMP, its batched and screened forms, basis pursuit);
- ``sparsity``: how many non-zeros a weight vector gets (fixed ratio, target error);
- ``tensor_codes``: a 2-D tensor coded row by row or flattened (``CodedTensor``);
- ``quantization``: the value quantizers (uniform, and one step per group of rows).

Modules here import nothing from the rest of torch_sinr but ``errors`` (tests/test_layout.py).
"""
