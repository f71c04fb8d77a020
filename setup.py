from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "torch_sinr" / "_version.py").read_text(), version)

setup(
    name="torch_sinr",
    version=version["__version__"],
    description="SINR: compress implicit neural representations with sparse codes over seeded random dictionaries",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["torch_sinr", "torch_sinr.*"])
    + find_packages("integrations/nerfstudio", include=["torch_sinr_nerfstudio", "torch_sinr_nerfstudio.*"])
    + find_packages("integrations/shacira", include=["torch_sinr_shacira", "torch_sinr_shacira.*"]),
    # The integrations live with their READMEs under integrations/. The nerfstudio plugin is
    # importable only with the [nerfstudio] extra installed (its modules import nerfstudio); the
    # SHACIRA-style image codec needs nothing beyond torch_sinr.
    package_dir={"torch_sinr_nerfstudio": "integrations/nerfstudio/torch_sinr_nerfstudio",
                 "torch_sinr_shacira": "integrations/shacira/torch_sinr_shacira"},
    # the C++ kernels' sources travel with the package: torch_sinr.native builds them on first use
    package_data={"torch_sinr.inr": ["assets/*.png"], "torch_sinr.native": ["*.cpp"]},
    python_requires=">=3.10",
    # torch is capped at the release this project is built and tested with; the file format
    # does not depend on it (the dictionary generator is pinned by golden tests).
    install_requires=[
        "torch>=2.4,<=2.14.1",
        "torchvision>=0.19,<=0.29.1",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "safetensors>=0.4,<1",
        "brotli>=1.1,<2",
        # the range coder of format 2; its probability quantization is part of what the bytes mean,
        # so the minor version is pinned (tests/format/test_golden.py checks the bytes)
        "constriction>=0.5,<0.6",
        "tqdm>=4.66,<5",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "scikit-learn>=1.4,<2", "matplotlib>=3.8,<4", "trimesh>=4,<6",
                 "scikit-image>=0.22,<1"],
        # occupancy fields of meshes (torch_sinr.occupancy): mesh loading, marching cubes, renders
        "occupancy": ["trimesh>=4,<6", "scikit-image>=0.22,<1", "matplotlib>=3.8,<4"],
        "bench": ["scikit-learn>=1.4,<2", "matplotlib>=3.8,<4"],
        # nerfstudio 1.1.5 leaves its own dependencies open; the pins below are the ones that keep
        # a fresh install on the capped torch and free of source builds (fpsample >= 1 ships no
        # cp311 wheel and needs a Rust toolchain). See integrations/nerfstudio/README.md.
        "nerfstudio": ["nerfstudio==1.1.5", "fpsample==0.3.3"],
    },
    entry_points={
        "console_scripts": [
            "torch-sinr=torch_sinr.cli:main",
            "ns-sinr-compress=torch_sinr_nerfstudio.cli:compress_main",
            "ns-sinr-eval=torch_sinr_nerfstudio.cli:eval_main",
            "ns-sinr-decompress=torch_sinr_nerfstudio.cli:decompress_main",
        ],
        "nerfstudio.method_configs": [
            "sinr-vanilla-nerf=torch_sinr_nerfstudio.methods:sinr_vanilla_nerf",
            "sinr-nerfacto=torch_sinr_nerfstudio.methods:sinr_nerfacto",
        ],
    },
)
