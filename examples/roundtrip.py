"""Encode and decode the example clips at several bitrates and print what each costs and how close it comes.

    python examples/roundtrip.py [--model DIR] [--out outputs/roundtrip]

The model is the default one shipped with the package unless `--model` names another. Decoded clips are written as
float WAV files next to a copy of each input at the model's rate; the table gives each one's mel distance to it
(`rvqgan.evaluation.metrics.mel_distance`, DAC's 7-scale mel loss: lower is closer).
"""

import argparse
import time
from pathlib import Path

import soundfile as sf
import torch
from rvqgan.evaluation.metrics import mel_distance
from rvqgan.feature_extraction import RvqganFeatureExtractor
from tqdm import tqdm

from rvqgan import load_model

EXAMPLES = Path(__file__).parent / "audio"
SPEECH = Path("/usr/share/sounds/alsa/Front_Center.wav")
CODEBOOKS = [2, 3, 6, 9]  # the paper's 1.78 / 2.67 / 5.33 / 8 kbps labels at 44.1 kHz


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a model directory or Hub repo id (default: the shipped default model)")
    parser.add_argument("--out", default="outputs/roundtrip", help="where to write the decoded WAV files")
    args = parser.parse_args(argv)

    model, identity = load_model(args.model)
    config = model.config
    extractor = RvqganFeatureExtractor(sampling_rate=config.sampling_rate, hop_length=config.hop_length)
    clips = sorted(EXAMPLES.glob("*.flac")) + ([SPEECH] if SPEECH.exists() else [])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"model: {identity}")

    rows = []
    start = time.perf_counter()
    for clip in tqdm(clips, desc="clips", unit="clip"):
        audio, rate = sf.read(clip, dtype="float32", always_2d=True)
        inputs = extractor(audio.T, sampling_rate=rate, return_tensors="pt")
        (original,) = extractor.post_process(inputs["input_values"], inputs["padding_mask"])
        sf.write(out / f"{clip.stem}.wav", original, config.sampling_rate, subtype="FLOAT")
        with torch.inference_mode():
            codes = model.encode(**inputs).audio_codes
            for n in [n for n in CODEBOOKS if n <= config.n_codebooks]:
                decoded = model.decode(audio_codes=codes[:, :n], padding_mask=inputs["padding_mask"]).audio_values
                name = out / f"{clip.stem}_{config.n_quantizers_to_kbps(n):.2f}kbps.wav"
                (restored,) = extractor.post_process(decoded, inputs["padding_mask"])
                sf.write(name, restored, config.sampling_rate, subtype="FLOAT")
                mel = mel_distance(original, restored, config.sampling_rate)
                rows.append(
                    (clip.name, audio.shape[0] / rate, n, config.n_quantizers_to_kbps(n), codes.shape[-1], mel, name)
                )
    elapsed = time.perf_counter() - start

    print(f"\n{'clip':24} {'seconds':>7} {'codebooks':>9} {'kbps':>6} {'frames':>6} {'mel':>5}  output")
    for clip, seconds, n, kbps, frames, mel, name in rows:
        print(f"{clip:24} {seconds:7.2f} {n:9d} {kbps:6.2f} {frames:6d} {mel:5.2f}  {name}")
    total_audio = sum({row[0]: row[1] for row in rows}.values())
    print(
        f"\n{len(clips)} clips, {total_audio:.1f} s of audio, {config.frame_rate:.2f} frames/s; "
        f"encoding once and decoding {len(CODEBOOKS)} times took {elapsed:.1f} s on {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
