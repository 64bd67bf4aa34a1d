"""Tiny BLIP checkpoints built from scratch: a word-level tokenizer and small configs.

Used by the tests, the benchmarks and the demo-model training; like the rest of ``demo.training`` it is not in
the wheel. The checkpoints they produce go through ``save_pretrained`` / ``from_pretrained`` exactly like
Salesforce's BLIP checkpoints.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")


def build_tokenizer(words: list[str]):
    """A WordPiece tokenizer over ``words`` with BERT normalisation, wrapped as ``BertTokenizerFast``.

    Args:
        words: the vocabulary (lower-case words); special tokens are added in front.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(words) - set(SPECIAL_TOKENS)):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[DEC]",
        model_max_length=64,
    )


def build_processor(tokenizer, image_size: int):
    """A ``BlipProcessor`` pairing ``tokenizer`` with an image processor at ``image_size`` pixels."""
    from transformers import BlipImageProcessor, BlipProcessor

    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _tower(hidden: int, layers: int) -> dict:
    """The size of one small transformer tower (the same shape for text and vision, BLIP and CLIP)."""
    return dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers, num_attention_heads=2)


def _text_tower(tokenizer, hidden: int, layers: int, **token_ids) -> dict:
    """A text tower that agrees with ``tokenizer``: its vocabulary, length limit, padding and end token."""
    return dict(
        vocab_size=len(tokenizer),
        **_tower(hidden, layers),
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **token_ids,
    )


def _vision_tower(hidden: int, layers: int, image_size: int, patch_size: int) -> dict:
    return dict(**_tower(hidden, layers), image_size=image_size, patch_size=patch_size)


def build_config(tokenizer, image_size: int = 32, patch_size: int = 8, hidden: int = 32, layers: int = 2):
    """A small ``BlipConfig`` whose text side agrees with ``tokenizer``'s special token ids."""
    from transformers import BlipConfig

    text = _text_tower(
        tokenizer, hidden, layers, bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id
    )
    vision = _vision_tower(hidden, layers, image_size, patch_size)
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=hidden, image_text_hidden_size=hidden)


def save_random_pair(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """Save a randomly initialised captioner and ITM model with their processor under ``directory``.

    Returns the captioner and ITM checkpoint directories.
    """
    import torch
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

    tokenizer = build_tokenizer(words)
    processor = build_processor(tokenizer, image_size)
    config = build_config(tokenizer, image_size=image_size)
    paths = []
    for name, cls in (("captioner", BlipForConditionalGeneration), ("itm", BlipForImageTextRetrieval)):
        torch.manual_seed(seed)
        model = cls(config).eval()
        path = Path(directory) / name
        model.save_pretrained(path)
        processor.save_pretrained(path)
        paths.append(path)
    return paths[0], paths[1]


def build_clip(tokenizer, image_size: int = 32, patch_size: int = 8, hidden: int = 32, layers: int = 2):
    """A small ``CLIPModel`` and its ``CLIPProcessor`` around ``tokenizer``.

    CLIP's text tower pools at ``eos_token_id`` (the legacy id 2 would make it pool at ``argmax(input_ids)``),
    so the config names the tokenizer's real end token.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    text = _text_tower(tokenizer, hidden, layers, bos_token_id=tokenizer.cls_token_id)
    vision = _vision_tower(hidden, layers, image_size, patch_size)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=hidden)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return CLIPModel(config).eval(), CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_random_clip(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny CLIP with its processor under ``directory``; returns the directory."""
    import torch

    torch.manual_seed(seed)
    model, processor = build_clip(build_tokenizer(words), image_size=image_size)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return Path(directory)
