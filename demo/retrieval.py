"""``capfilt eval --retrieval``: does the cleaned data train a better retrieval model? BLIP's Table 1 by its own
metric.

A small dual encoder (``contrastive``) is trained from scratch on a training set (``training_sets``) and
evaluated on the held-out set (``heldout``): image→text and text→image Recall@1/5/10 and DataComp's
``mean_recall@1``. On a video run the same rows train the same encoder on clips (its image tower shared by the
frames, meanP pooling: CLIP4Clip's recipe), sampled with the run's ``video.frame_choice``, and Recall@K is
video→text and text→video on held-out clips. Every training set gets the same steps of the same batch size, over
``SEEDS``, so rows differ only by their data; a row's figure is the mean over seeds with their standard deviation
as its spread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time

from ..pipeline.config import VideoConfig
from . import contrastive, heldout
from .evaluate import read_filter_config, read_rows, run_world
from .recall import recall_at_k
from .training_sets import TrainingSet, output_set, table1_sets
from .world import VOCABULARY

SEEDS = (0, 1, 2)
CONFIG = contrastive.ContrastiveConfig()
# A pair of a video run is a clip of ``frames`` frames through the image tower: at 64 px a step of 128 clips of 4
# frames took 1.3 s on 2 cores, at 32 px 0.12 s, so clips train at 32 px (the demo's objects stay 8 px or more).
VIDEO_CONFIG = contrastive.ContrastiveConfig(image_size=32)
COLUMNS = ("image_to_text@1", "image_to_text@5", "image_to_text@10", "text_to_image@1", "text_to_image@5")
COLUMNS += ("text_to_image@10", "mean_recall@1")


def measure_set(training: TrainingSet, held: heldout.HeldOut, seeds, config: contrastive.ContrastiveConfig) -> dict:
    """Train on ``training`` once per seed and measure each model on ``held``.

    Returns:
        ``name``, ``samples``, ``per_seed`` (``recall_at_k`` per seed), ``mean`` and ``spread`` (standard
        deviation over seeds; 0 for one seed) per figure, and ``seconds`` (training and measuring, all seeds).
    """
    heldout.check_disjoint(held, training.encoded, training.images)
    start = time.time()
    tokenizer = contrastive.WordTokenizer(VOCABULARY)
    images = _pixels(training.images, held.video, config)
    ids = tokenizer.encode(training.texts, config.max_tokens)
    held_images = _pixels(held.decoded(), held.video, config)
    held_ids = tokenizer.encode(list(held.captions), config.max_tokens)
    per_seed = []
    for seed in seeds:
        settings = contrastive.ContrastiveConfig(**{**config.__dict__, "seed": seed})
        model = contrastive.train(images, ids, len(tokenizer), settings)
        image_embeds, text_embeds = contrastive.embed(model, held_images, held_ids)
        per_seed.append(recall_at_k(image_embeds @ text_embeds.T))
    return {
        "name": training.name,
        "samples": len(training.texts),
        "per_seed": per_seed,
        "mean": {k: statistics.fmean(r[k] for r in per_seed) for k in COLUMNS},
        "spread": {k: statistics.stdev(r[k] for r in per_seed) if len(per_seed) > 1 else 0.0 for k in COLUMNS},
        "seconds": round(time.time() - start, 1),
    }


def _pixels(images: list, video: VideoConfig | None, config: contrastive.ContrastiveConfig):
    if video is None:
        return contrastive.pixels(images, config.image_size)
    return contrastive.clip_pixels(images, config.frames, config.image_size)


def clip_sampling(output_dir: str, rows: list[dict], config: contrastive.ContrastiveConfig) -> VideoConfig | None:
    """How a video run's clips are sampled for training and testing: as the run sampled them (its ``video``
    settings, ``frame_choice`` included), ``config.frames`` frames each. None for a run of images."""
    if not any(row.get("media") == "video" for row in rows):
        return None
    with open(os.path.join(output_dir, "report.json"), encoding="utf-8") as handle:
        recorded = json.load(handle)["config"].get("video") or {}
    known = {f.name for f in dataclasses.fields(VideoConfig)}
    return VideoConfig(**{**{k: v for k, v in recorded.items() if k in known}, "frames": config.frames, "fps": None})


def cut_share(rows: list[dict]) -> float:
    """The share of the run's clips that cut to another scene (``demo-data --cuts``), from their ground truth."""
    clips = [json.loads(row["json"]) for row in rows if row.get("media") == "video" and row.get("json")]
    return sum("cut" in meta for meta in clips) / len(clips) if clips else 0.0


def noise_ratios(rows: list[dict], threshold: float) -> dict:
    """BLIP Table 2's figure: the share of web captions the filter flags as noise (scored under ``threshold``),
    and the same share of synthetic captions (BLIP's own column, for nucleus sampling)."""
    web = [row["web_score"] for row in rows if row.get("web_score") is not None]
    synthetic = [score for row in rows for score in row.get("synthetic_scores") or []]
    return {
        "threshold": threshold,
        "web_captions": len(web),
        "web_flagged": sum(score < threshold for score in web),
        "web_noise_ratio": sum(score < threshold for score in web) / len(web) if web else 0.0,
        "synthetic_captions": len(synthetic),
        "synthetic_noise_ratio": sum(score < threshold for score in synthetic) / len(synthetic) if synthetic else 0.0,
    }


def retrieval(output_dir: str, ablation: bool = False, seeds=None, config=None, heldout_size=None) -> dict:
    """Retrieval after training on the run in ``output_dir``: on its kept samples, or with ``ablation`` on each
    row of ``training_sets.RETRIEVAL_ROWS``. What ``report.json`` records under ``retrieval``.

    Args:
        output_dir: a local capfilt output of demo-world input.
        ablation: train on every row of BLIP's Table 1, not only the output.
        seeds, config, heldout_size: training seeds, trainer settings and held-out pairs (default ``SEEDS``,
            ``CONFIG`` or for video ``VIDEO_CONFIG``, ``heldout.SIZE``).
    """
    rows = read_rows(output_dir)
    is_video = any(row.get("media") == "video" for row in rows)
    seeds, config = seeds or SEEDS, config or (VIDEO_CONFIG if is_video else CONFIG)
    heldout_size = heldout_size or heldout.SIZE
    world = run_world(rows)
    video = clip_sampling(output_dir, rows, config)
    cuts = cut_share(rows)
    held = heldout.heldout_set(world, heldout_size, video=video, cuts=cuts)
    sets = table1_sets(output_dir, video) if ablation else [output_set(output_dir, video)]
    threshold, _ = read_filter_config(output_dir)
    medium = "video/" if video else ""
    return {
        "world": world,
        "media": "video" if video else "image",
        "frame_choice": video.frame_choice if video else None,
        "heldout": {"pairs": heldout_size, "stream": f"capfilt-heldout/{medium}{world}/0", "cuts": round(cuts, 4)},
        "seeds": list(seeds),
        "config": config.__dict__,
        "rows": [measure_set(training, held, seeds, config) for training in sets],
        "noise": noise_ratios(rows, threshold),
    }


def format_retrieval(result: dict) -> str:
    """A plain-text table of ``retrieval``'s rows: mean ± spread over seeds per figure, in percent."""
    video = result.get("media") == "video"
    i, what = ("v", "clips") if video else ("i", "pairs")
    heads = [f"{i}→t R@1", "R@5", "R@10", f"t→{i} R@1", "R@5", "R@10", "mean R@1"]
    sampling = f", {result['config']['frames']} frames per clip ({result['frame_choice']}), meanP" if video else ""
    lines = [
        f"retrieval on {result['heldout']['pairs']} held-out {result['world']}-world {what}, "
        f"mean ± sd over seeds {result['seeds']}, {result['config']['steps']} steps × "
        f"{result['config']['batch_size']} pairs per run{sampling}",
        f"{'setting':<15}{'samples':>8}" + "".join(f"{h:>14}" for h in heads) + f"{'seconds':>9}",
    ]
    for row in result["rows"]:
        cells = "".join(f"{100 * row['mean'][k]:>8.1f} ± {100 * row['spread'][k]:<3.1f}" for k in COLUMNS)
        lines.append(f"{row['name']:<15}{row['samples']:>8}{cells}{row['seconds']:>9.0f}")
    noise = result["noise"]
    lines.append(
        f"filter flags {noise['web_flagged']} of {noise['web_captions']} web captions as noise "
        f"({100 * noise['web_noise_ratio']:.1f}%), and {100 * noise['synthetic_noise_ratio']:.1f}% of "
        f"{noise['synthetic_captions']} synthetic ones (BLIP Table 2), threshold {noise['threshold']}"
    )
    return "\n".join(lines)
