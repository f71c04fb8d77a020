"""The bitstream: value quantization, index coding, bit packing and entropy coding.

Everything here defines what bytes in a file mean, so it is versioned with the file format
(``torch_sinr.serialization.FORMAT_VERSION``) and pinned by golden tests.
"""
