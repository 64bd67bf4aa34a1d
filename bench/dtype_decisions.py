"""What bfloat16 changes in CapFilt's decisions on the trained demo checkpoints, against float32.

    python -m bench.dtype_decisions [--models models/embedded --samples 1024 --seed 5000]

Three runs over the same fresh demo samples through the pipeline's own stages (``capfilt.demo.measure``):
both models in float32; the float32 captioner with the filter in bfloat16 (the same captions, so every change
is the filter's); both in bfloat16 (what ``runtime.dtype: auto`` runs on a CPU with native bfloat16). Each
bfloat16 run is compared sample by sample with the float32 one: kept/dropped flips, chosen captions that differ,
scores that moved, and the quality of both against the demo world's ground truth.
"""

from __future__ import annotations

import argparse
import time

from capfilt.demo.measure import load_models, measure_models


def compare(base: list[dict], other: list[dict]) -> dict:
    """Per-sample differences of ``other``'s rows from ``base``'s (the same samples, in the same order)."""
    flips = caption = synthetic = 0
    drift = []
    for a, b in zip(base, other, strict=True):
        assert a["key"] == b["key"]
        flips += (a["status"] == "kept") != (b["status"] == "kept")
        caption += a["status"] == b["status"] == "kept" and a["caption"] != b["caption"]
        synthetic += a["synthetic_texts"] != b["synthetic_texts"]
        if a["synthetic_texts"] == b["synthetic_texts"] and a["web_text"] == b["web_text"]:
            pairs = [(a["web_score"], b["web_score"])] if a["web_score"] is not None else []
            drift += [abs(x - y) for x, y in pairs + list(zip(a["synthetic_scores"], b["synthetic_scores"]))]
    return {
        "kept_dropped_flips": flips,
        "chosen_caption_changed": caption,
        "synthetic_captions_changed": synthetic,
        "score_drift_mean": sum(drift) / max(1, len(drift)),
        "score_drift_max": max(drift, default=0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="models/embedded")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=5000, help="fresh demo samples (training used other seeds)")
    args = parser.parse_args()
    runs = {"float32": ("float32", "float32"), "filter bfloat16": ("float32", "bfloat16")}
    runs["both bfloat16"] = ("bfloat16", "bfloat16")
    results = {}
    for name, (captioner_dtype, filter_dtype) in runs.items():
        captioner, _ = load_models(args.models, dtype=captioner_dtype)
        _, scorer = load_models(args.models, dtype=filter_dtype)
        started = time.monotonic()
        results[name] = measure_models(captioner, scorer, samples=args.samples, seed=args.seed)
        seconds = time.monotonic() - started
        quality = results[name]["evaluation"]
        print(
            f"{name}: kept {quality['kept']}/{quality['input']}, kept accuracy {quality['kept_accuracy']:.4f}, "
            f"clean yield {quality['clean_yield']:.4f}, ITM AUC {results[name]['itm']['auc']:.4f} ({seconds:.1f} s)",
            flush=True,
        )
    for name in ("filter bfloat16", "both bfloat16"):
        changes = compare(results["float32"]["rows"], results[name]["rows"])
        print(
            f"{name} vs float32 over {args.samples} samples: {changes['kept_dropped_flips']} kept/dropped flips, "
            f"{changes['chosen_caption_changed']} chosen captions changed, {changes['synthetic_captions_changed']} "
            f"samples with other synthetic captions; ITM score drift where the candidates are the same: mean "
            f"{changes['score_drift_mean']:.4f}, max {changes['score_drift_max']:.4f}"
        )


if __name__ == "__main__":
    main()
