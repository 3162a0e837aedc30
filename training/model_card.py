"""The model card of a published checkpoint, from `model_card_template.md` and what the checkpoint folder records."""

import json
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData
from rvqgan.modeling import RvqganConfig

TEMPLATE = Path(__file__).with_name("model_card_template.md")
TAGS = ["audio", "audio-codec", "neural-codec", "rvqgan", "custom_code"]


def model_card(config: RvqganConfig, repo_id: str, checkpoint_dir: str | Path) -> ModelCard:
    """A card with usage, the bitrate table and, only when the folder holds them, measured results.

    `eval_results.json` (a list of rows, e.g. `[{"codec": ..., "kbps": ..., "mel_distance": ...}]`, as the evaluation
    writes it) fills the evaluation table; `training.md` the training section (data, compute, licences).
    """
    checkpoint_dir = Path(checkpoint_dir)
    rows = (
        json.loads((checkpoint_dir / "eval_results.json").read_text())
        if (checkpoint_dir / "eval_results.json").exists()
        else []
    )
    columns = list(rows[0]) if rows else []
    card_data = ModelCardData(
        library_name="transformers",
        license="mit",
        tags=TAGS,
        pipeline_tag="feature-extraction",
        metrics=[c for c in columns if c not in ("set", "codec", "kbps", "category", "clips")] or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=TEMPLATE,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        sampling_rate=config.sampling_rate,
        n_codebooks=config.n_codebooks,
        codebook_size=config.codebook_size,
        frame_rate=config.frame_rate,
        max_kbps=config.n_quantizers_to_kbps(config.n_codebooks),
        bitrates=[(n, config.n_quantizers_to_kbps(n)) for n in range(1, config.n_codebooks + 1)],
        evaluation=[[row.get(c, "") for c in columns] for row in rows],
        evaluation_columns=columns,
        training=(checkpoint_dir / "training.md").read_text() if (checkpoint_dir / "training.md").exists() else None,
    )
