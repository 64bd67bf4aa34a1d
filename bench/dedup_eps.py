"""Which ε semantic deduplication should use with each embedding the demo offers: the cosine of true copies of a
demo image (re-encoded, resized) against the cosine of each image's nearest image of another scene, and of the same
caption drawn again with new jitter (a re-render: another picture, not a copy). Prints figures.

    python -m bench.dedup_eps [--scenes 512] [--seed 0]

A copy is found at ε when its cosine to the original is ≥ 1 − ε; an image is wrongly merged at ε when its
nearest other scene is that close. The images go through the pipeline's own decoding and the models' own
embedding (``models.similarity``), as ``capfilt run ... --set similarity.embeddings=true`` writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import random

import numpy as np
from PIL import Image

from capfilt.demo.world import JPEG_QUALITY, Scene, canonical_caption, encode_image, render, sample_scene
from capfilt.models.similarity import load_similarity
from capfilt.pipeline.select.dedup import default_eps
from capfilt.pipeline.shard.decode import open_image

EMBEDDINGS = {
    "embedded:clip": ("embedded:clip", None),
    "itc": ("itc", "embedded:itm"),
    "embedded:siglip": ("embedded:siglip", None),
}
EPS = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05)


def copies(original: bytes, rng: random.Random) -> dict:
    """A re-encode at another JPEG quality and a resized copy (0.5–0.9 of the side, ``scale``), as web reposts make
    them."""
    image = Image.open(io.BytesIO(original)).convert("RGB")
    reencoded = io.BytesIO()
    image.save(reencoded, format="JPEG", quality=rng.choice([60, 70, 80]))
    scale = rng.uniform(0.5, 0.9)
    resized = io.BytesIO()
    image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC).save(
        resized, format="JPEG", quality=JPEG_QUALITY
    )
    return {"reencode": reencoded.getvalue(), "resize": resized.getvalue(), "scale": scale}


def rerender(scene: Scene, rng: random.Random) -> bytes:
    """The same caption drawn again: its objects jittered anew, a few pixels from where they were."""
    return encode_image(render(dataclasses.replace(scene, jitter=rng.randrange(2**31))), "jpg")


def thumbnail_psnr(a: bytes, b: bytes, side: int = 16) -> float:
    """How alike two pictures are to the eye at ``side`` × ``side`` (dB; identical thumbnails give inf)."""
    small = [np.asarray(p.resize((side, side), Image.Resampling.BOX), np.float64) / 255 for p in pictures([a, b])]
    mse = np.mean((small[0] - small[1]) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def pictures(data: list[bytes]) -> list[Image.Image]:
    return [open_image(d, 10**8, 512)[0] for d in data]


def measure(model: str, scorer: str | None, originals: list[bytes], copied: list[dict], captions: list[str]):
    similarity = load_similarity(model, scorer, device="cpu", dtype="float32")
    base = similarity.image_embeddings(pictures(originals)).numpy()
    # The run writes float16 embedding files; semantic deduplication reads those.
    base = base.astype(np.float16).astype(np.float32)
    kinds = {}
    for kind in ("reencode", "resize", "rerender"):
        embedded = similarity.image_embeddings(pictures([c[kind] for c in copied])).numpy()
        kinds[kind] = np.sum(base * embedded.astype(np.float16).astype(np.float32), axis=1)
    cosines = base @ base.T
    np.fill_diagonal(cosines, -2)
    nearest_other = cosines.max(axis=1)
    same_caption = np.array([[a == b for b in captions] for a in captions])
    np.fill_diagonal(same_caption, False)
    nearest_other_caption = np.where(same_caption, -2, cosines).max(axis=1)
    return kinds, nearest_other, nearest_other_caption


def quantiles(values: np.ndarray) -> str:
    q = np.quantile(values, [0, 0.01, 0.05, 0.5, 0.95, 0.99, 1])
    return " ".join(f"{v:.4f}" for v in q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(f"dedup-eps/{args.seed}")
    scenes = [sample_scene(rng) for _ in range(args.scenes)]
    originals = [encode_image(render(scene), "jpg") for scene in scenes]
    captions = [canonical_caption(scene) for scene in scenes]
    copied = [copies(data, rng) for data in originals]
    for scene, copy in zip(scenes, copied, strict=True):
        copy["rerender"] = rerender(scene, rng)
    print(f"{args.scenes} demo scenes ({len(set(captions))} distinct captions), a re-encode and a resize of each")
    print("quantiles: min 1% 5% median 95% 99% max")
    # A re-render is another picture of the same caption, not a copy; how close it comes to one, pixel for pixel:
    pairs = list(zip(originals, copied, strict=True))
    copy_psnr = [thumbnail_psnr(o, c[kind]) for o, c in pairs for kind in ("reencode", "resize")]
    rerender_psnr = np.array([thumbnail_psnr(o, c["rerender"]) for o, c in pairs])
    floor = min(copy_psnr)
    print(
        f"16x16 thumbnails: copies' PSNR to their original >= {floor:.1f} dB; re-renders of the same caption that "
        f"close {np.mean(rerender_psnr >= floor):.3f}, identical thumbnails {np.mean(np.isinf(rerender_psnr)):.3f}, "
        f"identical bytes {np.mean([o == c['rerender'] for o, c in pairs]):.3f}"
    )
    for name, (model, scorer) in EMBEDDINGS.items():
        kinds, nearest, nearest_caption = measure(model, scorer, originals, copied, captions)
        print(f"\n{name}")
        for kind, values in kinds.items():
            print(f"  copy ({kind:8s}) cosine to its original: {quantiles(values)}")
        print(f"  nearest other scene's cosine:          {quantiles(nearest)}")
        print(f"  nearest scene of another caption:       {quantiles(nearest_caption)}")
        print(
            "  eps     copies found   images with another scene that close   (another caption)   re-renders that close"
        )
        for eps in EPS:
            found = np.mean(np.concatenate([kinds["reencode"], kinds["resize"]]) >= 1 - eps)
            merged = np.mean(nearest >= 1 - eps)
            merged_caption = np.mean(nearest_caption >= 1 - eps)
            rerendered = np.mean(kinds["rerender"] >= 1 - eps)
            print(f"  {eps:<7} {found:12.3f}   {merged:36.3f}   {merged_caption:17.3f}   {rerendered:.3f}")
        # Which resized copies stay beyond the default ε: the demo towers were trained on clean renders, and a small
        # copy carries its JPEG blocks at their input size.
        eps = default_eps(model, scorer or "")
        scales = np.array([c["scale"] for c in copied])
        bins = [(low, low + 0.1) for low in (0.5, 0.6, 0.7, 0.8)]
        found = [np.mean(kinds["resize"][(scales >= a) & (scales < b)] >= 1 - eps) for a, b in bins]
        print(f"  resized copies found at the default eps {eps}, by scale: ", end="")
        print(", ".join(f"{a:.1f}-{b:.1f} {f:.3f}" for (a, b), f in zip(bins, found, strict=True)))


if __name__ == "__main__":
    main()
