"""What a retrieval model trains on for each row of BLIP's Table 1, read the way a trainer reads shards.

``capfilt``: the run's output tars, through ``webdataset``: the kept samples, each with the caption in its
``.txt``. The other rows need samples the output does not hold (dropped ones, and the web caption where the
output kept a synthetic one), so their images come from the run's input shards, also through ``webdataset``,
and their texts from the parquet rows (one per input sample): ``none`` every non-empty web caption as it is,
``filter`` the web captions the filter passed, ``captioner`` BLIP's row: with no filter nothing removes the web
captions, so every image trains with its web caption (noise included) and its first synthetic caption, and
``synthetic_only`` the caption table's stricter reading, the first synthetic caption in place of the web one
(``evaluate.ablation_choice`` makes the single choices for both tables). A run of ``capfilt run demo`` without
``--input`` recorded the demo settings it wrote its input with; the demo world is deterministic, so that
input is written again into a temporary folder, and every row's web caption is checked against it.

A video run's sets hold clips: each clip's frames, sampled as the run sampled them (``video.frame_choice``) but
at most ``frames`` of them, which the trainer pools (``contrastive.DualEncoder``).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from dataclasses import dataclass

from PIL import Image

from ..pipeline.config import VideoConfig
from ..pipeline.errors import UsageError
from ..pipeline.shard.video import VIDEO_EXTENSIONS
from .evaluate import ablation_choice, read_filter_config, read_rows
from .media import decode_media

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# BLIP Table 1's rows, with the caption table's "captioner" reading beside BLIP's own.
RETRIEVAL_ROWS = ("none", "filter", "captioner", "synthetic_only", "capfilt")


@dataclass(frozen=True)
class TrainingSet:
    """Image-text pairs for one training run: ``encoded[i]`` (the bytes as in the shard), ``images[i]``
    (decoded: an image, or a clip's list of frames) and ``texts[i]`` belong to the sample ``keys[i]``."""

    name: str
    keys: list[str]
    encoded: list[bytes]
    images: list[Image.Image]
    texts: list[str]


def read_samples(paths: list[str]) -> dict[str, dict[str, bytes]]:
    """Every sample of the tars at ``paths`` as ``{key: {extension: bytes}}``, read with ``webdataset``."""
    import webdataset as wds

    samples = {}
    for sample in wds.WebDataset(paths, shardshuffle=False, empty_check=False):
        samples[sample["__key__"]] = {k: v for k, v in sample.items() if not k.startswith("__")}
    return samples


def _media(members: dict[str, bytes]) -> bytes | None:
    return next((members[ext] for ext in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS) if ext in members), None)


def build_set(
    name: str, pairs: list[tuple[str, bytes, str]], video: VideoConfig | None = None, decoded: dict | None = None
) -> TrainingSet:
    """A ``TrainingSet`` of ``(key, media bytes, text)``: images, or with ``video`` clips sampled as it says; a
    pair whose media does not decode is left out. ``decoded`` (by key) keeps what was decoded for the next call."""
    keys, encoded, images, texts = [], [], [], []
    decoded = {} if decoded is None else decoded
    for key, data, text in pairs:
        if key not in decoded:
            decoded[key] = decode_media(data, video)
        image = decoded[key]
        if image is None:
            continue
        keys.append(key)
        encoded.append(data)
        images.append(image)
        texts.append(text)
    return TrainingSet(name, keys, encoded, images, texts)


def output_set(output_dir: str, video: VideoConfig | None = None) -> TrainingSet:
    """The kept samples of ``output_dir``'s tars with their chosen captions: the ``capfilt`` row (clips sampled
    as ``video`` says, when given)."""
    paths = sorted(glob.glob(os.path.join(output_dir, "*.tar")))
    pairs = []
    for key, members in read_samples(paths).items():
        data = _media(members)
        if data is not None and "txt" in members:
            pairs.append((key, data, members["txt"].decode("utf-8")))
    return build_set("capfilt", pairs, video)


def input_samples(output_dir: str, rows: list[dict]) -> dict[str, dict[str, bytes]]:
    """The run's input samples by key: from ``config.input`` in ``report.json``, or, for a demo run that made
    its own input, from that input written again. Raises ``UsageError`` when they cannot be found or are not
    this run's input."""
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as handle:
        config = json.load(handle)["config"]
    if config.get("input"):
        from ..pipeline.shard.reader import match_shards

        paths = match_shards(config["input"])
        if not paths:
            # report.json records the pattern as it was typed: a relative one resolves against this folder.
            raise UsageError(
                f"{output_dir}: the run's input {config['input']} (from report.json) matches no shard from "
                f"{os.getcwd()}; Table 1 needs its images: run eval where the run was started"
            )
        samples = read_samples(paths)
    elif config.get("demo_data"):
        from .world import write_demo_shards

        settings = config["demo_data"]
        with tempfile.TemporaryDirectory(prefix="capfilt-retrieval-") as folder:
            samples = read_samples(
                write_demo_shards(
                    folder,
                    settings["shards"],
                    settings["samples_per_shard"],
                    settings["seed"],
                    settings["correct_fraction"],
                    video=settings.get("video", False),
                )
            )
    else:
        raise UsageError(f"{output_dir}: report.json records no input; Table 1 needs the run's input images")
    for row in rows:
        members = samples.get(row["key"])
        # The pipeline records a web caption with its whitespace collapsed.
        web = " ".join(members.get("txt", b"").decode("utf-8", "replace").split()) if members else None
        if members is None or (row.get("web_text") is not None and web != row["web_text"]):
            raise UsageError(f"{output_dir}: the input found for this run does not hold sample {row['key']} as it ran")
    return samples


def row_texts(row: dict, name: str, threshold: float, web_margin: float) -> list[str]:
    """The texts one input sample trains with in retrieval row ``name`` (``RETRIEVAL_ROWS`` but ``capfilt``,
    which is the output as written)."""
    if name == "captioner":
        texts = [
            ablation_choice(row, "none", threshold, web_margin),
            ablation_choice(row, "captioner", threshold, web_margin),
        ]
    elif name == "synthetic_only":
        texts = [ablation_choice(row, "captioner", threshold, web_margin)]
    else:
        texts = [ablation_choice(row, name, threshold, web_margin)]
    return [text for text in texts if text is not None]


def table1_sets(output_dir: str, video: VideoConfig | None = None) -> list[TrainingSet]:
    """One ``TrainingSet`` per row of ``RETRIEVAL_ROWS`` over the run in ``output_dir`` (of clips sampled as
    ``video`` says, when given). A clip is decoded once, whatever the rows it trains in."""
    rows = read_rows(output_dir)
    threshold, web_margin = read_filter_config(output_dir)
    samples = input_samples(output_dir, rows)
    decoded: dict = {}  # by key: each sample decoded once, whatever the rows it trains in
    sets = []
    for name in RETRIEVAL_ROWS[:-1]:
        pairs = []
        for row in rows:
            data = _media(samples[row["key"]])
            if data is not None:
                pairs += [(row["key"], data, text) for text in row_texts(row, name, threshold, web_margin)]
        sets.append(build_set(name, pairs, video, decoded))
    return sets + [output_set(output_dir, video)]
