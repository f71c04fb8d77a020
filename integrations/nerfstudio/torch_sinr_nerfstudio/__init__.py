"""nerfstudio integration of torch_sinr: compress trained NeRF scenes, load them back, and train
them as compressed.

- ``compress_run(load_config, output_dir, config)``: the ``ns-sinr-compress`` command;
- ``compress_fields(model, config)``: compress a live model's field MLPs in place;
- ``store_fields_uniform(model, bits)``: the uniform baseline of that, the same linears on
  per-tensor uniform grids, the rest stored alike;
- ``load_compressed_pipeline(load_config, file)``: the ``ns-sinr-eval`` way back, key-checked;
- ``decompress.decompress_run(file, load_config, output_dir)``: the ``ns-sinr-decompress`` way out, a
  standard nerfstudio run directory (config.yml + checkpoint) for nerfstudio's own tools;
- methods ``sinr-vanilla-nerf`` and ``sinr-nerfacto`` (see ``methods``), registered with ns-train;
- tiny-cuda-nn runs (nerfacto's default) go through a pure-torch port of tcnn (``tcnn_port``,
  ``tcnn_scene``): the same function, SINR-codable linears, rendering on a CPU.
"""

from .compat import require_nerfstudio

require_nerfstudio()

from .compress import compress_fields, compress_run, store_fields_uniform  # noqa: E402
from .load import SceneMismatchError, load_compressed_pipeline, load_into_model  # noqa: E402

__all__ = ["SceneMismatchError", "compress_fields", "compress_run", "load_compressed_pipeline", "load_into_model",
           "store_fields_uniform"]
