"""Hear, see and measure what each bitrate costs: the codec at several bitrates next to Opus and MP3, and live from the
microphone (Gradio Blocks).

`python spaces_demo/app.py` serves it on http://127.0.0.1:7860. Models: `RVQGAN_MODEL`, local directories or Hub repo
ids separated by commas; without it, the package's default model.
"""

import importlib.util
import os
import queue
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import librosa
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from rvqgan.evaluation import baselines, metrics
from rvqgan.feature_extraction import validate_audio
from rvqgan.feature_extraction.audio import Resampler
from rvqgan.feature_extraction.audio_io import AudioFileError, read_audio, write_audio
from rvqgan.modeling import kbps_on_disk

from rvqgan import compress, decompress, load_model
from rvqgan.container import RvqHeader, read, write

MAX_SECONDS = 30
MIN_SECONDS = 0.1
MAX_ROWS = 8  # decoded versions shown at once
MAX_QUEUE = 20
DEFAULT_CODEBOOKS = (2, 3, 6, 9)
CLASSIC = {
    "Opus 6 kbps": ("opus", 6),
    "Opus 8 kbps": ("opus", 8),
    "Opus 12 kbps": ("opus", 12),
    "Opus 16 kbps": ("opus", 16),
    "MP3 16 kbps": ("mp3", 16),
    "MP3 32 kbps": ("mp3", 32),
}
DEFAULT_CLASSIC = ["Opus 6 kbps", "Opus 8 kbps"]
HAS_VISQOL = importlib.util.find_spec("visqol") is not None
VISQOL_MIN_SECONDS = 1.0  # ViSQOL refuses shorter clips
RANGE_DB = 80  # spectrograms show this many dB below the original's loudest cell
DIFF_DB = 20  # colour range of the difference spectrograms, +-dB
METRIC_COLUMNS = {
    "mel": "mel distance",
    "si_sdr": "SI-SDR (dB)",
    "visqol": "ViSQOL",
}  # rvqgan.evaluation.metrics.METRICS
SAMPLES = Path("/usr/share/sonic-pi/samples")  # Debian sonic-pi-samples: CC0 clips from freesound.org
EXAMPLES = {
    SAMPLES / "loop_amen.flac": "Drum break (music)",
    SAMPLES / "ambi_choir.flac": "Choir (music)",
    SAMPLES / "guit_harmonics.flac": "Guitar harmonics (music)",
    Path("/usr/share/sounds/alsa/Front_Center.wav"): "Voice (speech)",  # Debian alsa-utils
    SAMPLES / "perc_door.flac": "Door (environmental sound)",
}
WORK = Path(tempfile.gettempdir()) / "rvqgan-space"
KEEP_SECONDS = 3600  # Gradio serves its own copies of the files; ours are removed after this
LIVE_CHUNK_SECONDS = 0.1  # the microphone's chunks (`stream_every`; Gradio 6.31 gives 0.1 s outside the first tab)
LIVE_IDLE_SECONDS = 10  # a recording that sends nothing for this long has ended (its page was closed)
LIVE_SESSIONS = 4  # recordings coded at once; more wait in the queue


def fail(message: str) -> gr.Error:
    """An error shown in the page until dismissed."""
    return gr.Error(message, duration=None, print_exception=False)


def fresh_workdir() -> Path:
    """A new folder for one comparison's files; those of comparisons older than `KEEP_SECONDS` are removed."""
    WORK.mkdir(exist_ok=True)
    for old in WORK.iterdir():
        if time.time() - old.stat().st_mtime > KEEP_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=WORK))


def load_clip(path: str) -> tuple[np.ndarray, int, list[str]]:
    """Mono float32 audio of `MIN_SECONDS` to `MAX_SECONDS`, its rate, and notices of what was changed."""
    try:
        audio, rate = read_audio(path)
    except AudioFileError as error:
        raise fail(str(error).replace(str(path), Path(path).name)) from None
    if audio.shape[1] < MIN_SECONDS * rate:
        raise fail(f"{Path(path).name}: the clip is shorter than {MIN_SECONDS:g} s.")
    notices = []
    if audio.shape[0] > 1:
        notices.append(f"Mixed down from {audio.shape[0]} channels to mono.")
    if audio.shape[1] > MAX_SECONDS * rate:
        notices.append(f"Trimmed to the first {MAX_SECONDS} s of {audio.shape[1] / rate:.1f} s.")
    return audio.mean(0)[: MAX_SECONDS * rate].astype(np.float32), rate, notices


def mel_db(audio: np.ndarray, rate: int) -> np.ndarray:
    """Log-mel power spectrogram (128 bands, 2048-point frames, hop 512) in dB."""
    mel = librosa.feature.melspectrogram(y=audio, sr=rate, n_fft=2048, hop_length=512, n_mels=128)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)


def plot(image: np.ndarray, path: Path, seconds: float, title: str, top: float | None = None) -> str:
    """Save a spectrogram (`top`: the dB of the loudest cell shown) or, without `top`, a difference in dB as PNG."""
    figure = Figure(figsize=(8, 2.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    if top is not None:
        style = dict(cmap="magma", vmin=top - RANGE_DB, vmax=top)
    else:
        style = dict(cmap="coolwarm", vmin=-DIFF_DB, vmax=DIFF_DB)
    shown = axes.imshow(image, origin="lower", aspect="auto", extent=(0, seconds, 0, image.shape[0]), **style)
    axes.set(title=title, xlabel="seconds", ylabel="mel band")
    figure.colorbar(shown, ax=axes, label="dB" if top is not None else "dB vs original")
    figure.savefig(path)
    return str(path)


def decode_all(model, identity: str, audio: np.ndarray, rate: int, codebooks: list[int], classic: list[str], progress):
    """Encode once, decode every setting: a list of (codec, setting, nominal kbps, bytes on disk, float32 audio)."""
    versions, steps = [], 2 * (len(codebooks) + len(classic))
    if codebooks:
        progress(0, desc="Encoding")
        header, codes = read(compress(model, audio, rate, n_quantizers=max(codebooks), identity=identity))
        for i, k in enumerate(codebooks):
            setting = f"{k} codebook{'s' * (k > 1)}"
            progress(i / steps, desc=f"Decoding {setting}")
            data = write(replace(header, n_q=k), codes[:, :k])
            decoded = decompress(model, data, identity)[0][0]
            versions.append(("RVQGAN", setting, model.config.n_quantizers_to_kbps(k), len(data), decoded))
    for i, name in enumerate(classic, len(codebooks)):
        progress(i / steps, desc=f"Coding {name}")
        codec, kbps = CLASSIC[name]
        decoded, true_kbps = baselines.encode_decode(audio, rate, codec, kbps)
        versions.append((*name.split(" ", 1), float(kbps), round(true_kbps * 1000 / 8 * len(audio) / rate), decoded))
    return [(c, s, kbps, size, np.asarray(decoded, dtype=np.float32)) for c, s, kbps, size, decoded in versions]


def measure(audio: np.ndarray, rate: int, versions: list, metric_names: list[str], work: Path, progress):
    """Write the original and each version as float WAV, score the versions and draw their spectrograms.

    Returns the table, the original's WAV and spectrogram, and per version its player, spectrogram and difference.
    """
    seconds = len(audio) / rate
    write_audio(work / "original.wav", [audio[None]], rate, 1)
    reference = mel_db(audio, rate)
    top = float(reference.max())
    floor = top - RANGE_DB  # differences below what the spectrograms show are not drawn
    rows, players, mels, diffs = [], [], [], []
    for i, (codec, setting, kbps, size, decoded) in enumerate(versions):
        title = f"{codec} · {setting}"
        progress((len(versions) + i) / (2 * len(versions)), desc=f"Measuring {title}")
        write_audio(work / f"{i}.wav", [decoded[None]], rate, 1)
        true_kbps = kbps_on_disk(size, seconds)
        scores = {METRIC_COLUMNS[n]: metrics.METRICS[n][0](audio, decoded, rate) for n in metric_names}
        rows.append(
            {"codec": codec, "setting": setting, "kbps": kbps, "kbps on disk": true_kbps, "bytes": size, **scores}
        )
        label = f"{title} ({true_kbps:.2f} kbps on disk)"
        players.append(gr.update(value=str(work / f"{i}.wav"), label=label, visible=True))
        spectrogram = mel_db(decoded, rate)
        mels.append(plot(spectrogram, work / f"{i}.png", seconds, title, top))
        difference = np.maximum(spectrogram, floor) - np.maximum(reference, floor)
        diffs.append(plot(difference, work / f"{i}-diff.png", seconds, f"{title} minus original"))
    original = (str(work / "original.wav"), plot(reference, work / "original.png", seconds, "Original", top))
    return pd.DataFrame(rows), original, players, mels, diffs


class LiveSession:
    """One recording: the microphone's chunks, queued as they arrive, then in order resampled to the model's rate
    (`Resampler`), encoded and decoded by the model's exact streams, by one consumer (`play`)."""

    def __init__(self, model, identity: str, n_quantizers: int):
        self.model, self.identity = model, identity
        self.encoder, self.decoder = model.streaming_encoder(n_quantizers), model.streaming_decoder()
        self.chunks = queue.Queue()  # (arrival time, rate, PCM as Gradio passes it); None: the recording stopped
        self.rate = self.resampler = None  # the microphone's, set by the first chunk
        self.ended = False  # no more chunks are taken
        self.received, self.codes, self.decoded, self.server_seconds = [], [], [], []

    def next_chunk(self) -> tuple | None:
        """The next chunk queued; None once the recording has stopped or sent nothing for `LIVE_IDLE_SECONDS`."""
        try:
            return self.chunks.get(timeout=LIVE_IDLE_SECONDS)
        except queue.Empty:
            return None

    def code(self, arrival: float, rate: int, pcm: np.ndarray) -> np.ndarray:
        """A `(samples,)` or `(samples, channels)` chunk -> the reconstruction that became final."""
        if self.resampler is None:
            self.rate, self.resampler = rate, Resampler(rate, self.model.config.sampling_rate, 1)
        audio = np.atleast_2d(validate_audio(pcm.T)).mean(0)
        self.received.append(audio)
        decoded = self.coded(self.resampler.push(audio[None])[0])
        self.server_seconds.append(time.perf_counter() - arrival)
        return decoded

    def coded(self, samples: np.ndarray) -> np.ndarray:
        codes = self.encoder.push(torch.from_numpy(samples))
        self.codes.append(codes)
        self.decoded.append(self.decoder.push(codes)[0].cpu().numpy())
        return self.decoded[-1]

    def finish(self) -> np.ndarray:
        """End the streams: the rest of the reconstruction."""
        played = sum(map(len, self.decoded))
        self.coded(self.resampler.flush()[0])
        self.codes.append(self.encoder.flush())
        self.decoded += [self.decoder.push(self.codes[-1])[0].cpu().numpy(), self.decoder.flush()[0].cpu().numpy()]
        return self.reconstruction()[played:]

    def reconstruction(self) -> np.ndarray:
        """Everything decoded, cut to the length of the input at the model's rate (as `decompress` cuts it)."""
        return np.concatenate(self.decoded)[: self.encoder.received]

    def seconds(self) -> float:
        return sum(map(len, self.received)) / self.rate

    def latency(self) -> str:
        """The codec's look-ahead plus the server's time for the last chunk, as Markdown."""
        rate = self.model.config.sampling_rate
        encoder_ms, decoder_ms = 1000 * self.encoder.delay / rate, 1000 * self.decoder.delay / rate
        last, mean = 1000 * self.server_seconds[-1], 1000 * np.mean(self.server_seconds)
        chunk_ms = 1000 * len(self.received[-1]) / self.rate
        return (
            f"**Latency {encoder_ms + decoder_ms + last:.0f} ms**: the codec's look-ahead, {encoder_ms:.0f} ms "
            f"encoding + {decoder_ms:.0f} ms decoding, and {last:.0f} ms on the server for the last chunk, from its "
            f"arrival to its decoded audio (mean {mean:.0f} ms over {len(self.server_seconds)} chunks). The browser "
            f"adds its {chunk_ms:.0f} ms chunks and the network."
        )

    def save(self, work: Path) -> list[str]:
        """The input as received (float WAV at the microphone's rate), the reconstruction (float WAV at the model's
        rate) and the codes (.rvq)."""
        config = self.model.config
        codes = torch.cat(self.codes, -1).cpu().numpy()
        write_audio(work / "live-input.wav", [np.concatenate(self.received)[None]], self.rate, 1)
        write_audio(work / "live-reconstruction.wav", [self.reconstruction()[None]], config.sampling_rate, 1)
        header = RvqHeader(
            model_id=self.identity,
            sample_rate=config.sampling_rate,
            channels=1,
            original_length=self.encoder.received,
            n_q=codes.shape[1],
            bits=config.bits_per_codebook,
            frames=codes.shape[-1],
        )
        (work / "live.rvq").write_bytes(write(header, codes))
        return [str(work / name) for name in ("live-input.wav", "live-reconstruction.wav", "live.rvq")]


def listen(chunk: tuple[int, np.ndarray] | None, session: LiveSession | None):
    """The microphone's `.stream` handler: queue the chunk for the session's consumer."""
    if session is not None and not session.ended and chunk is not None and chunk[1].size:
        session.chunks.put((time.perf_counter(), *chunk))


def stop_live(session: LiveSession | None):
    """The microphone's `stop_recording` handler: the session's consumer finishes after the chunks queued so far."""
    if session is not None:
        session.chunks.put(None)


def play(session: LiveSession):
    """Code the chunks as they arrive: the reconstruction for the streaming player and the latency; once the
    recording stops or reaches `MAX_SECONDS`, the rest and the files. One generator for the whole recording, as
    Gradio plays what one generator yields as one stream (what a `.stream` handler yields makes a stream per chunk,
    of which the player plays only the first)."""
    rate, unchanged = session.model.config.sampling_rate, [gr.skip()] * 3
    notice = ""
    for chunk in iter(session.next_chunk, None):
        yield playable(session.code(*chunk), rate), session.latency(), *unchanged
        if session.seconds() >= MAX_SECONDS:
            notice = f"\n\nCoded the first {MAX_SECONDS} s; press Stop."
            break
    session.ended = True
    if not session.received:
        yield gr.skip(), "Nothing was recorded.", None, None, None
        return
    yield playable(session.finish(), rate), session.latency() + notice, *session.save(fresh_workdir())


def playable(audio: np.ndarray, rate: int):
    """Decoded audio for the streaming player as 16-bit PCM (float audio Gradio would scale to each chunk's peak), or
    no update for none."""
    return (rate, np.round(audio * 32767).astype(np.int16)) if audio.size else gr.skip()


def build_demo(models: list[str] | None = None) -> gr.Blocks:
    """The page for the given models (directories or Hub repo ids; none: the default model)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = [load_model(name, device) for name in (models or [None])]
    by_name = {identity.split("@")[0]: (model, identity) for model, identity in loaded}

    def codebook_choices(name: str) -> dict:
        """The model's numbers of codebooks with their bitrates, and the default selection."""
        config = by_name[name][0].config
        choices = [(f"{k} · {config.n_quantizers_to_kbps(k):.2f} kbps", k) for k in range(1, config.n_codebooks + 1)]
        return dict(choices=choices, value=[k for k in DEFAULT_CODEBOOKS if k <= config.n_codebooks])

    def live_bitrate(name: str) -> dict:
        """The model's numbers of codebooks with their bitrates, all of them by default."""
        return dict(choices=codebook_choices(name)["choices"], value=by_name[name][0].config.resolve_n_quantizers())

    def start_live(name: str, n_quantizers: int) -> tuple:
        """A new recording's session; the previous recording's files cleared."""
        model, identity = by_name[name]
        session = LiveSession(model, identity, model.config.resolve_n_quantizers(n_quantizers))
        return session, "Listening…", None, None, None

    def compare(clip, model, codebooks, classic, difference, visqol, progress=gr.Progress()):  # noqa: B008 (Gradio's convention)
        """Code the clip at every chosen setting and measure each; the outputs are listed below."""
        if not clip:
            raise fail("Upload, record or pick an example clip first.")
        codebooks, classic = sorted(codebooks), [c for c in CLASSIC if c in classic]
        if not 0 < len(codebooks) + len(classic) <= MAX_ROWS:
            raise fail(f"Pick between 1 and {MAX_ROWS} bitrates.")
        codec_model, identity = by_name[model]
        audio, rate, notices = load_clip(clip)
        metric_names = ["mel", "si_sdr"]
        if visqol and HAS_VISQOL and len(audio) >= VISQOL_MIN_SECONDS * rate:
            metric_names.append("visqol")
        elif visqol and HAS_VISQOL:
            notices.append(f"ViSQOL needs at least {VISQOL_MIN_SECONDS:g} s of audio: not measured.")
        versions = decode_all(codec_model, identity, audio, rate, codebooks, classic, progress)
        work = fresh_workdir()
        table, original, players, mels, diffs = measure(audio, rate, versions, metric_names, work, progress)
        table.to_csv(work / "comparison.csv", index=False)
        hidden = [gr.update(value=None, visible=False)] * (MAX_ROWS - len(versions))
        return (
            describe(identity, codec_model, notices),
            table.style.format(precision=3),
            str(work / "comparison.csv"),
            *original,
            *players,
            *hidden,
            *show_images(difference, (mels, diffs)),
            (mels, diffs),
        )

    with gr.Blocks(title="RVQGAN: what each bitrate costs", delete_cache=(KEEP_SECONDS, KEEP_SECONDS)) as demo:
        gr.Markdown(
            "# RVQGAN: what each bitrate costs\nCode a clip at several bitrates of the neural codec and of "
            "Opus / MP3, then listen, look and measure (clips longer than "
            f"{MAX_SECONDS} s are trimmed; stereo is mixed down to mono), or hear the codec live from the microphone."
        )
        with gr.Tab("Compare"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip", elem_id="clip")
                    examples = {str(path): label for path, label in EXAMPLES.items() if path.exists()}
                    if examples:
                        gr.Examples([[path] for path in examples], [clip], example_labels=list(examples.values()))
                with gr.Column():
                    model_name = gr.Dropdown(list(by_name), value=next(iter(by_name)), label="Model")
                    codebooks = gr.CheckboxGroup(
                        label="Codec bitrates (codebooks)", **codebook_choices(model_name.value)
                    )
                    classic = gr.CheckboxGroup(list(CLASSIC), value=DEFAULT_CLASSIC, label="Classic codecs (ffmpeg)")
                    with gr.Row():
                        difference = gr.Checkbox(label="Difference spectrograms")
                        visqol = gr.Checkbox(HAS_VISQOL, label="ViSQOL (slower)", interactive=HAS_VISQOL)
                    run = gr.Button("Compare", variant="primary")
            notice = gr.Markdown(label="Notices", elem_id="notice")
            table = gr.Dataframe(
                label="Metrics: mel distance (lower is better), SI-SDR and ViSQOL (higher is better)",
                interactive=False,
                elem_id="metrics",
            )
            csv = gr.File(label="Table as CSV")
            with gr.Row():
                original = gr.Audio(type="filepath", label="Original (mono, as measured)", scale=1)
                original_image = gr.Image(type="filepath", label="Original spectrogram", show_label=False, scale=2)
            players, images = [], []
            for i in range(1, MAX_ROWS + 1):
                with gr.Row():
                    players.append(
                        gr.Audio(type="filepath", label=f"Version {i}", visible=False, scale=1, elem_id=f"player-{i}")
                    )
                    images.append(
                        gr.Image(
                            type="filepath",
                            label=f"Spectrogram {i}",
                            show_label=False,
                            visible=False,
                            scale=2,
                            elem_id=f"image-{i}",
                        )
                    )
            spectrograms = gr.State(([], []))

            inputs = [clip, model_name, codebooks, classic, difference, visqol]
            outputs = [notice, table, csv, original, original_image, *players, *images, spectrograms]
            run.click(compare, inputs, outputs, api_name="compare", concurrency_limit=1)
            difference.change(show_images, [difference, spectrograms], images, api_visibility="private")
            model_name.change(
                lambda name: gr.update(**codebook_choices(name)), model_name, codebooks, api_visibility="private"
            )
        with gr.Tab("Live"):
            gr.Markdown(
                "Speak or play into the microphone: the codec encodes and decodes the sound as it arrives and plays "
                "the reconstruction back (headphones avoid feedback). The streams are exact: the same codes and "
                "audio as coding the whole recording at once, which the files below hold once you stop. "
                f"Each recording is coded up to {MAX_SECONDS} s."
            )
            with gr.Row():
                live_model = gr.Dropdown(list(by_name), value=next(iter(by_name)), label="Model")
                live_codebooks = gr.Dropdown(
                    label="Codec bitrate (codebooks)", elem_id="live-codebooks", **live_bitrate(live_model.value)
                )
            with gr.Row():
                mic = gr.Audio(sources=["microphone"], streaming=True, label="Microphone", elem_id="live-mic")
                live_output = gr.Audio(
                    streaming=True, autoplay=True, label="Reconstruction, live", elem_id="live-output"
                )
            latency = gr.Markdown(elem_id="live-latency")
            with gr.Row():
                received = gr.Audio(type="filepath", label="Input as received (mono)", elem_id="live-input")
                reconstruction = gr.Audio(type="filepath", label="Reconstruction", elem_id="live-reconstruction")
                live_codes = gr.File(label="Codes (.rvq, `rvqgan decode` reads it)", elem_id="live-codes")
            session = gr.State()

            files = [received, reconstruction, live_codes]
            mic.stream(
                listen,
                [mic, session],
                None,
                stream_every=LIVE_CHUNK_SECONDS,
                concurrency_limit=LIVE_SESSIONS,
                api_visibility="private",
            )
            mic.start_recording(
                start_live, [live_model, live_codebooks], [session, latency, *files], api_visibility="private"
            ).then(
                play,
                session,
                [live_output, latency, *files],
                concurrency_limit=LIVE_SESSIONS,
                api_visibility="private",
            )
            mic.stop_recording(stop_live, session, None, api_visibility="private")
            live_model.change(
                lambda name: gr.update(**live_bitrate(name)), live_model, live_codebooks, api_visibility="private"
            )
    return demo.queue(max_size=MAX_QUEUE)


def show_images(difference: bool, spectrograms: tuple[list[str], list[str]]) -> list:
    """One image update per row: the spectrograms, or their differences from the original's."""
    shown = spectrograms[1] if difference else spectrograms[0]
    hidden = [gr.update(value=None, visible=False)] * (MAX_ROWS - len(shown))
    return [gr.update(value=path, visible=True) for path in shown] + hidden


def describe(identity: str, model, notices: list[str]) -> str:
    """The model and the notices, as Markdown."""
    config = model.config
    lines = [
        f"**Model** `{identity}`: {config.sampling_rate} Hz, {config.n_codebooks} codebooks of "
        f"{config.codebook_size} codes at {config.frame_rate:.2f} Hz."
    ]
    return "\n\n".join(lines + notices)


if __name__ == "__main__":
    names = [name.strip() for name in os.environ.get("RVQGAN_MODEL", "").split(",") if name.strip()]
    build_demo(names).launch()
