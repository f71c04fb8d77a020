"""The bitstream: index coding, bit packing and entropy coding (the value quantizers, which the
layers use too, are ``torch_sinr.core.quantization``).

Everything here defines what bytes in a file mean, so it is versioned with the file format
(``torch_sinr.format``) and pinned by golden tests. ``wire`` (varints, a bounded reader) and
``rangecoder`` (range coding with a stored histogram model) are format 2's; ``entropy``
(tagged Brotli streams) is format 1's.
"""
