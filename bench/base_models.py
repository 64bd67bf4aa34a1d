"""BLIP-base-shaped checkpoints with random weights: the compute of Salesforce's base models, offline.

python -m bench.base_models --output /tmp/blip-base-random
"""

from __future__ import annotations

import argparse
from pathlib import Path

from capfilt.demo.training.tiny import build_processor, build_tokenizer


def save_base_shaped(directory: Path, image_size: int = 384) -> tuple[Path, Path]:
    """A captioner and ITM model from ``BlipConfig()`` defaults (224 M parameters each) and a tokenizer
    with BERT's vocabulary size, so generation's output layer costs what the real one does."""
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
    )
    config = BlipConfig(text_config=text, vision_config=dict(image_size=image_size))
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
    args = parser.parse_args()
    print(*save_base_shaped(Path(args.output), args.image_size))
