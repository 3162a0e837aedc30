"""The Gradio Space (spaces_demo/app.py) on a local server: its API through gradio_client, its page in Chromium, and
its live tab with Chromium's fake microphone.

The server runs a tiny 44.1 kHz model. `SPACE_SCREENSHOT=spaces_demo/screenshot.png pytest tests/test_space.py -k
browser` runs the browser test with the default model instead and saves the finished page there too.
"""

import importlib.util
import io
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import EXAMPLES, TINY, assert_codes_equal_but_for_float_ties, tiny_model
from rvqgan.feature_extraction.audio import resample
from rvqgan.modeling import RvqganConfig

ROOT = Path(__file__).parent.parent
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = os.environ.get("SPACE_SCREENSHOT")
LIVE_FILES = ("input", "reconstruction", "codes")  # the live tab's files once a recording stops: #live-<name>
CORRUPT_WAV = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(64)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # librosa: empty mel filters at small windows


def is_missing(name: str) -> bool:
    """`ffmpeg` not on the PATH, an absolute path that does not exist, or a module that is not installed."""
    if name == "ffmpeg":
        return shutil.which(name) is None
    return not Path(name).exists() if name.startswith("/") else importlib.util.find_spec(name) is None


def requires(*names):
    """Modules, `ffmpeg` or a program's path: a failure in CI, a skip elsewhere."""
    missing = [n for n in names if is_missing(n)]
    if missing:
        message = f"needs {', '.join(missing)} (pip install '.[dev]'; scripts/system-packages.sh)"
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def excerpt(path: Path, out: Path, seconds: float) -> Path:
    """The first seconds of a real recording (all channels) as a float WAV."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    sf.write(out, audio[: int(seconds * rate)], rate, subtype="FLOAT")
    return out


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """(url, app module, model directory or None for the default model) of a running server."""
    requires("gradio", "gradio_client", "librosa", "matplotlib", "visqol", "ffmpeg")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    spec = importlib.util.spec_from_file_location("space_app", ROOT / "spaces_demo" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    model_dir = None if SCREENSHOT else tmp_path_factory.mktemp("tiny-44khz")
    if model_dir:
        tiny_model(sampling_rate=44100).save_pretrained(model_dir)
    demo = app.build_demo([str(model_dir)] if model_dir else None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port())
    yield url, app, model_dir
    demo.close()


@pytest.fixture(scope="module")
def client(space):
    from gradio_client import Client

    return Client(space[0], verbose=False)


def test_api_compares_a_real_clip_at_two_bitrates_with_the_eval_librarys_numbers(space, client, tmp_path):
    from gradio_client import handle_file
    from rvqgan.evaluation import baselines, metrics
    from rvqgan.feature_extraction.audio_io import read_audio

    from rvqgan import compress, decompress, load_model

    _, app, model_dir = space
    clip = excerpt(EXAMPLES / "loop_amen.flac", tmp_path / "amen.wav", 1.0)  # stereo drums
    notice, table, csv, original, original_image, *slots = client.predict(
        clip=handle_file(str(clip)), codebooks=[1, 2], classic=["Opus 6 kbps"], visqol=True, api_name="/compare"
    )
    players, images = slots[: app.MAX_ROWS], slots[app.MAX_ROWS :]

    assert "Mixed down from 2 channels to mono" in notice
    reference, rate = sf.read(original, dtype="float32")
    assert sf.info(original).subtype == "FLOAT" and rate == 44100
    np.testing.assert_array_equal(reference, read_audio(clip)[0].mean(0))
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    assert list(rows.columns) == [
        "codec",
        "setting",
        "kbps",
        "kbps on disk",
        "bytes",
        "mel distance",
        "SI-SDR (dB)",
        "ViSQOL",
    ]
    assert list(rows["setting"]) == ["1 codebook", "2 codebooks", "6 kbps"]
    pd.testing.assert_frame_equal(pd.read_csv(csv), rows, check_dtype=False)

    model, identity = load_model(str(model_dir))
    for i, row in rows.iterrows():
        assert players[i]["visible"] and images[i]["visible"]
        assert Path(images[i]["value"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sf.info(players[i]["value"]).subtype == "FLOAT"
        decoded, decoded_rate = sf.read(players[i]["value"], dtype="float32")
        assert decoded_rate == rate and decoded.shape == reference.shape
        assert row["mel distance"] == metrics.mel_distance(reference, decoded, rate)
        assert row["SI-SDR (dB)"] == metrics.si_sdr(reference, decoded, rate)
        # ViSQOL varies in the last bits from one call to the next
        assert row["ViSQOL"] == pytest.approx(metrics.visqol(reference, decoded, rate), rel=1e-12)
        assert row["kbps on disk"] == pytest.approx(8 * row["bytes"] / (len(reference) / rate) / 1000, rel=1e-12)
        if row["codec"] == "RVQGAN":  # the bytes of a .rvq file coded at that bitrate alone, decoded by the codec
            data = compress(model, reference, rate, n_quantizers=i + 1, identity=identity)
            assert row["bytes"] == len(data) and row["kbps"] == model.config.n_quantizers_to_kbps(i + 1)
            np.testing.assert_array_equal(decoded, decompress(model, data, identity)[0][0])
        else:
            opus, true_kbps = baselines.encode_decode(reference, rate, "opus", 6)
            assert row["kbps on disk"] == pytest.approx(true_kbps, rel=1e-12)
            np.testing.assert_array_equal(decoded, opus)
    assert all(not update["visible"] for update in players[3:] + images[3:])


def test_api_trims_long_clips_with_a_notice(space, client, tmp_path):
    from gradio_client import handle_file

    audio, rate = sf.read(EXAMPLES / "loop_amen.flac", dtype="float32")
    long_clip = tmp_path / "amen_x18.wav"
    sf.write(long_clip, np.tile(audio, (18, 1)), rate, subtype="FLOAT")
    notice, table, _, original, *_ = client.predict(
        clip=handle_file(str(long_clip)), codebooks=[], classic=["Opus 6 kbps"], visqol=False, api_name="/compare"
    )
    assert f"Trimmed to the first {space[1].MAX_SECONDS} s of {18 * len(audio) / rate:.1f} s" in notice
    assert sf.info(original).frames == space[1].MAX_SECONDS * rate
    assert table["headers"][-1] == "SI-SDR (dB)" and len(table["data"]) == 1


def first_samples_as_wav(path: Path, samples: int) -> bytes:
    audio, rate = sf.read(path, dtype="float32")
    out = io.BytesIO()
    sf.write(out, audio[:samples], rate, format="WAV", subtype="FLOAT")
    return out.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.wav", CORRUPT_WAV, "broken.wav: unreadable or corrupt audio"),
        ("notes.txt", b"not audio at all\n", "notes.txt: unreadable or corrupt audio"),
        (
            "click.wav",
            first_samples_as_wav(EXAMPLES / "loop_amen.flac", 100),
            "click.wav: the clip is shorter than 0.1 s",
        ),
        (None, None, "Upload, record or pick an example clip first"),
    ],
    ids=["corrupt-wav", "text-file", "too-short", "no-clip"],
)
def test_api_reports_unreadable_uploads_in_one_line(space, client, tmp_path, name, content, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    clip = None
    if name:
        (tmp_path / name).write_bytes(content)
        clip = handle_file(str(tmp_path / name))
    with pytest.raises(AppError) as error:
        client.predict(clip=clip, codebooks=[1], classic=[], api_name="/compare")
    assert message in str(error.value) and "Traceback" not in str(error.value)


@pytest.fixture(scope="module")
def playwright():
    requires("playwright", CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def launch(playwright, *args: str):
    """Headless Chromium with `args` added."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", *args],
    )


@pytest.fixture(scope="module")
def browser(playwright):
    browser = launch(playwright)
    yield browser
    browser.close()


def wait_for_images(page, count: int, suffix: str):
    """Until rows 1..count show their loaded image `<row - 1><suffix>`."""
    page.wait_for_function(
        """([count, suffix]) => [...Array(count).keys()].every(i => {
        const image = document.querySelector(`#image-${i + 1} img`);
        return image && image.complete && image.naturalWidth > 0 && image.src.endsWith(`/${i}${suffix}`); })""",
        arg=[count, suffix],
    )


@pytest.mark.slow
def test_browser_upload_compare_one_player_per_bitrate_and_the_table(space, browser, tmp_path):
    url, app, _ = space
    page = browser.new_page(viewport={"width": 1280, "height": 4000})  # every row in view: Gradio lazy-loads images
    page.goto(url)
    n_codebooks = RvqganConfig().n_codebooks if SCREENSHOT else TINY["n_codebooks"]
    labels = [f"RVQGAN · {k} codebooks" for k in app.DEFAULT_CODEBOOKS if k <= n_codebooks]
    labels += [" · ".join(name.split(" ", 1)) for name in app.DEFAULT_CLASSIC]
    clip = excerpt(EXAMPLES / "loop_amen.flac", tmp_path / "amen.wav", 1.0)
    page.locator("#clip input[type=file]").set_input_files(clip)
    page.get_by_role("button", name="Clear").wait_for()  # the upload is in
    page.get_by_role("button", name="Compare").click()

    page.locator(f"#player-{len(labels)}").wait_for(timeout=600_000 if SCREENSHOT else 90_000)
    for i in range(1, app.MAX_ROWS + 1):
        shown = i <= len(labels)
        assert page.locator(f"#player-{i}").is_visible() == shown and page.locator(f"#image-{i}").is_visible() == shown
        if shown:
            assert page.locator(f"#player-{i} [data-testid=block-label]").inner_text().startswith(labels[i - 1] + " (")
    rows = page.locator("#metrics").get_by_role("row").all_inner_texts()
    assert len(rows) == 1 + len(labels) and rows[0].split()[:2] == ["codec", "setting"]
    href = page.locator("#player-1 a[data-testid=download-link]").get_attribute("href")
    format_tag, bits, seconds = page.evaluate(
        """async (href) => {
        const data = await (await fetch(href)).arrayBuffer(), header = new DataView(data);
        const audio = await new OfflineAudioContext(1, 1, 44100).decodeAudioData(data.slice(0));
        return [header.getUint16(20, true), header.getUint16(34, true), audio.duration]; }""",
        href,
    )
    assert (format_tag, bits) == (3, 32) and seconds == pytest.approx(1.0, abs=1e-3)  # Chromium decodes the float WAV

    page.get_by_label("Difference spectrograms").check()
    wait_for_images(page, len(labels), "-diff.png")
    page.get_by_label("Difference spectrograms").uncheck()
    wait_for_images(page, len(labels), ".png")
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=ARTIFACTS / "space.png", full_page=True)
    if SCREENSHOT:
        shutil.copy(ARTIFACTS / "space.png", SCREENSHOT)
    page.close()


@pytest.mark.slow
def test_browser_shows_the_error_for_a_corrupt_upload(space, browser, tmp_path):
    page = browser.new_page()
    page.goto(space[0])
    (tmp_path / "broken.wav").write_bytes(CORRUPT_WAV)
    page.locator("#clip input[type=file]").set_input_files(tmp_path / "broken.wav")
    page.get_by_role("button", name="Clear").wait_for()
    page.get_by_role("button", name="Compare").click()
    page.get_by_text("broken.wav: unreadable or corrupt audio").wait_for(timeout=30_000)
    assert page.get_by_text("Traceback").count() == 0
    page.close()


@pytest.mark.slow
def test_browser_live_tab_plays_the_microphone_coded_as_it_streams_and_equal_to_the_offline_decode(
    space, playwright, tmp_path
):
    """Chromium's fake microphone plays a drum break into the live tab at 2 codebooks: the player streams the
    reconstruction while recording, and once stopped the files hold the input the server received, the
    reconstruction and its codes: the codes equal the offline encode of that input (but for float ties), the
    reconstruction their offline decode."""
    from rvqgan import load_model
    from rvqgan.container import read

    url, _, model_dir = space
    n_quantizers = 2
    microphone = excerpt(EXAMPLES / "loop_amen.flac", tmp_path / "amen.wav", 2.0)  # played in a loop
    browser = launch(
        playwright, "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}"
    )
    page = browser.new_context(permissions=["microphone"]).new_page()
    page.goto(url)
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-codebooks input").click()
    page.get_by_role("option", name=f"{n_quantizers} · ").click()
    page.locator("#live-mic").get_by_role("button", name="Record").click()
    # the reconstruction plays as it streams: 1.5 s of it played before the recording stops
    page.wait_for_function("document.querySelector('#live-output audio')?.currentTime >= 1.5", timeout=60_000)
    page.locator("#live-mic").get_by_role("button", name="Stop").click()
    page.locator("#live-codes a[data-testid=download-link]").wait_for(timeout=30_000)
    page.wait_for_function("document.querySelector('#live-output audio').ended", timeout=30_000)
    played = page.evaluate("document.querySelector('#live-output audio').duration")
    latency = page.locator("#live-latency").inner_text()
    hrefs = [page.locator(f"#live-{name} a[data-testid=download-link]").get_attribute("href") for name in LIVE_FILES]
    received, reconstruction, rvq = [page.request.get(href).body() for href in hrefs]
    browser.close()

    assert sf.info(io.BytesIO(received)).subtype == sf.info(io.BytesIO(reconstruction)).subtype == "FLOAT"
    received, microphone_rate = sf.read(io.BytesIO(received), dtype="float32")
    reconstruction, rate = sf.read(io.BytesIO(reconstruction), dtype="float32")
    header, codes = read(rvq)
    codes = torch.as_tensor(codes, dtype=torch.long)
    model, identity = load_model(str(model_dir) if model_dir else None)  # None: SPACE_SCREENSHOT's default model
    audio = resample(received, microphone_rate, rate)  # equals the server's streamed resampling (tests/test_audio.py)
    assert len(received) >= 1.5 * microphone_rate and np.abs(received).max() > 0.1  # the drums reached the server
    with torch.inference_mode():
        encoded = model.encode(torch.from_numpy(audio)[None, None], n_quantizers=n_quantizers)
        expected = model.decode(audio_codes=codes).audio_values[0, : len(audio)].numpy()
    assert (header.model_id, header.sample_rate, header.original_length) == (identity, rate, len(audio))
    assert_codes_equal_but_for_float_ties(model, codes, encoded)
    assert reconstruction.shape == expected.shape and np.abs(reconstruction - expected).max() <= 1e-4
    # the player got all of the reconstruction, as ffmpeg's AAC: a priming frame of 1024 samples, the last one padded
    assert played == pytest.approx(len(reconstruction) / rate, abs=0.06)
    encoder, decoder = model.streaming_encoder(n_quantizers), model.streaming_decoder()
    assert latency.startswith("Latency ") and f"{1000 * encoder.delay / rate:.0f} ms encoding + " in latency
    assert f"{1000 * decoder.delay / rate:.0f} ms decoding" in latency
