"""BLIP-base-shaped (or, with ``--large``, BLIP-large-shaped) checkpoints with random weights: the compute of
Salesforce's models, offline.

python -m bench.base_models --output /tmp/blip-base-random
python -m bench.base_models --output /tmp/blip-large-random --large
"""

from __future__ import annotations

import argparse
from pathlib import Path

from capfilt.demo.training.tiny import build_processor, build_tokenizer

# Salesforce/blip-image-captioning-large and blip-itm-large-coco: a ViT-L/16 vision tower (the text side is the
# base models' BERT-base, its cross-attention widened to the vision tower's 1024 by ``BlipConfig``). Their text
# config has 12 attention heads; the base shape keeps ``BlipTextConfig``'s default of 8 (the same weights and
# FLOPs, 96-wide heads instead of 64) so that its figures stay comparable with the earlier ones in BENCHMARKS.md.
LARGE_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
LARGE_TEXT = dict(num_attention_heads=12)


def save_base_shaped(directory: Path, image_size: int = 384, large: bool = False) -> tuple[Path, Path]:
    """A captioner and ITM model from ``BlipConfig()`` defaults (224 M parameters each; with ``large``, BLIP-large's
    vision tower: 446 M) and a tokenizer with BERT's vocabulary size, so generation's output layer costs what
    the real one does."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipForImageTextRetrieval

    words = "a picture of photo cat dog red blue".split() + [f"w{i}" for i in range(30524 - 14)]
    tokenizer = build_tokenizer(words)
    tokenizer.model_max_length = 512
    text = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        sep_token_id=tokenizer.sep_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **(LARGE_TEXT if large else {}),
    )
    vision = dict(image_size=image_size, **(LARGE_VISION if large else {}))
    config = BlipConfig(text_config=text, vision_config=vision)
    processor = build_processor(tokenizer, image_size)
    paths = []
    for name, cls in (("captioner", BlipForConditionalGeneration), ("itm", BlipForImageTextRetrieval)):
        torch.manual_seed(0)
        path = Path(directory) / name
        cls(config).eval().save_pretrained(path)
        processor.save_pretrained(path)
        paths.append(path)
    return paths[0], paths[1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--large", action="store_true", help="BLIP-large's ViT-L/16 vision tower instead of ViT-B/16")
    args = parser.parse_args()
    print(*save_base_shaped(Path(args.output), args.image_size, args.large))
