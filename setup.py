from pathlib import Path

from setuptools import setup

SUBPACKAGES = {  # installed name (rvqgan.<name>): folder
    "modeling": "modeling_rvqgan",
    "feature_extraction": "feature_extraction",
    "training": "training",
    "evaluation": "evaluation",
}
TRAIN = ["accelerate>=1.0", "datasets>=4", "tensorboard", "pyyaml", "librosa>=0.10", "julius>=0.2"]
DEMO = ["gradio>=6", "librosa>=0.10", "matplotlib>=3.7", "pandas"]
EVAL = [
    "evaluate>=0.4",
    "visqol-python>=3.8",
    "pesq>=0.0.4",
    "pystoi>=0.4",
    "torchmetrics>=1.0",
    "librosa>=0.10",
    "matplotlib>=3.7",
]

setup(
    name="rvqgan",
    version="0.1.0",
    description="Improved RVQGAN (Descript Audio Codec) neural audio codec as a Hugging Face transformers model",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # one installed namespace, `rvqgan`: the library's folders of this repository are its subpackages
    packages=["rvqgan", *(f"rvqgan.{name}" for name in SUBPACKAGES)],
    package_dir={f"rvqgan.{name}": folder for name, folder in SUBPACKAGES.items()},
    package_data={
        "rvqgan.training": ["model_card_template.md", "configs/*.yaml"],
        "rvqgan": ["default_model/*", "default_model/discriminator/*"],
    },
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "numpy",
        "safetensors",
        "soundfile>=0.12",
        "soxr",
        "scipy",
        "tqdm",
        "constriction>=0.5",
    ],
    entry_points={"console_scripts": ["rvqgan = rvqgan.cli:main"]},
    extras_require={
        "train": TRAIN,
        "demo": DEMO,
        "eval": EVAL,
        "dev": ["pytest>=8", "pytest-xdist", "playwright>=1.40", "ruff>=0.6", "pyloudnorm>=0.1"] + TRAIN + EVAL + DEMO,
    },
)
