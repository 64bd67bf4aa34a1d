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


# ---- other families: tiny random checkpoints of each architecture capfilt runs (or refuses), saved by path ----


def retokenized(words: list[str], **options):
    """``build_tokenizer``'s tokenizer rebuilt with ``options`` (e.g. ``model_input_names``,
    ``model_max_length``), which ``save_pretrained`` records, so the checkpoint's tokenizer makes what the
    family's real one makes."""
    from transformers import BertTokenizerFast

    base = build_tokenizer(words)
    options = {"model_max_length": base.model_max_length, **options}
    return BertTokenizerFast(tokenizer_object=base.backend_tokenizer, **base.special_tokens_map, **options)


def _calibrated(model, scale: float = 10.0, bias: float = -2.0):
    """A SigLIP model with a real temperature and bias: transformers initialises both to 0, which would make
    every score ``sigmoid(cosine)`` and let a scorer that forgot either pass its tests."""
    import math

    import torch

    with torch.no_grad():
        model.logit_scale.fill_(math.log(scale))
        model.logit_bias.fill_(bias)
    return model


def save_random_siglip(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``SiglipModel`` with a ``SiglipProcessor`` under ``directory``.

    Its tokenizer makes ``input_ids`` only, as SigLIP's own (``SiglipTokenizer``) does: SigLIP's text tower reads
    texts padded to its full length (64 tokens here, as in SigLIP) with no attention mask and pools the last
    position. The tokenizer is the tests' WordPiece one, since SigLIP's own needs sentencepiece.
    """
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tokenizer = retokenized(words, model_input_names=["input_ids"])
    text = _text_tower(tokenizer, 32, 2, bos_token_id=tokenizer.cls_token_id)
    config = SiglipConfig(text_config=text, vision_config=_vision_tower(32, 2, image_size, 8))
    torch.manual_seed(seed)
    model = _calibrated(SiglipModel(config).eval())
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    return _save(directory, model, SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer))


def save_random_siglip2(directory: Path, words: list[str], seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``Siglip2Model`` (SigLIP 2's native-resolution, NaFlex, variant) with a
    ``Siglip2Processor`` under ``directory``.

    ``Siglip2Processor`` always loads its tokenizer as ``Siglip2Tokenizer`` (Gemma's BPE, lower-cased, padded on
    the left), so the tokenizer here is one of those over the letters of ``words``: a WordPiece one would load
    as BPE with every word unknown. Its patches are SigLIP 2's own (16 px, at most 256 per image):
    ``Siglip2Processor`` makes those whatever its image processor says.
    """
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor, Siglip2Tokenizer

    vocab = {token: i for i, token in enumerate(("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "\u2581"))}
    for letter in sorted(set("".join(words).lower())):
        vocab.setdefault(letter, len(vocab))
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=64)
    text = dict(
        vocab_size=len(vocab),
        **_tower(32, 2),
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(**_tower(32, 2), patch_size=16, num_patches=256)
    torch.manual_seed(seed)
    model = _calibrated(Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).eval())
    image_processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=256)
    return _save(directory, model, Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer))


def save_random_metaclip2(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``MetaClip2Model`` with a ``CLIPProcessor`` under ``directory``; like
    CLIP's text tower it pools at ``eos_token_id``, so the config names the tokenizer's real end token."""
    import torch
    from transformers import CLIPImageProcessor, CLIPProcessor, MetaClip2Config, MetaClip2Model

    tokenizer = build_tokenizer(words)
    text = _text_tower(tokenizer, 32, 2, bos_token_id=tokenizer.cls_token_id)
    vision = _vision_tower(32, 2, image_size, 8)
    torch.manual_seed(seed)
    model = MetaClip2Model(MetaClip2Config(text_config=text, vision_config=vision, projection_dim=32)).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return _save(directory, model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer))


def save_bare_blip2(directory: Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``Blip2ForConditionalGeneration`` (an OPT decoder) under ``directory``:
    config and weights only, no processor; enough for what a role check reads."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(
        vision_config=_vision_tower(32, 1, 32, 8),
        qformer_config=_qformer(),
        text_config=_opt_decoder(layers=1, vocab_size=64, max_position_embeddings=64),
        num_query_tokens=4,
    )
    torch.manual_seed(seed)
    return _save(directory, Blip2ForConditionalGeneration(config).eval())


def save_bare_llava(directory: Path, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``LlavaForConditionalGeneration`` (a CLIP vision tower, a projector and a
    Llama decoder) under ``directory``: config and weights only, no processor; enough for a role check."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    vision = dict(model_type="clip_vision_model", **_vision_tower(32, 1, 32, 8))
    text = dict(model_type="llama", **_tower(32, 1), num_key_value_heads=2, vocab_size=64)
    torch.manual_seed(seed)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=63)
    return _save(directory, LlavaForConditionalGeneration(config).eval())


def _save(directory: Path, model, processor=None) -> Path:
    model.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)
    return Path(directory)


# ---- decoder-only VLMs: a word-level tokenizer with a chat template, as LLaVA-1.5's processor has ----

VLM_SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")
# LLaVA-1.5's own template (llava-hf/llava-1.5-7b-hf), lower-cased as the tokenizer lower-cases: the user's turn
# with the image first, then the assistant's turn that generation continues.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}user: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% else %}assistant: {% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %} assistant:{% endif %}"
)


def build_vlm_tokenizer(words: list[str], model_max_length: int = 128, image_token: bool = True):
    """A word-level ``PreTrainedTokenizerFast`` for a decoder-only VLM: lower-cased words and punctuation, ``<s>``
    in front of every text (as Llama's tokenizer), ``</s>`` ending a caption, ``<image>`` where the processor
    puts the image's tokens; padded on the left, as decoder-only generation needs. ``image_token``: the tokenizer
    names ``<image>`` its image token (LLaVA's processor reads it there; BLIP-2's registers it itself)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(VLM_SPECIAL_TOKENS)}
    for word in sorted(set(words) | {"user", "assistant", ":", ".", ","} - set(VLM_SPECIAL_TOKENS)):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()  # joins words with spaces
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=model_max_length,
        padding_side="left",
        **({"extra_special_tokens": {"image_token": "<image>"}} if image_token else {}),
    )
    return tokenizer


def llava(
    tokenizer, vision: dict, image_processor, patch_size: int, hidden: int, layers: int, strategy: str, seed: int
):
    """A ``LlavaForConditionalGeneration`` (the vision tower ``vision`` configures, LLaVA's two-layer projector and
    a Llama decoder of ``hidden`` and ``layers`` that agrees with ``tokenizer``), initialised from ``seed``, and
    its ``LlavaProcessor`` with the chat template. ``strategy`` is LLaVA's ``vision_feature_select_strategy``:
    ``default`` drops the tower's CLS position (CLIP), ``full`` keeps every position (SigLIP has no CLS)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    text = dict(model_type="llama", **_tower(hidden, layers), num_key_value_heads=2, **decoder_vocabulary(tokenizer))
    side = vision["image_size"] // patch_size
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=side * side,
        vision_feature_layer=-1,
        vision_feature_select_strategy=strategy,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=int(strategy == "default"),  # the CLS position "default" drops again
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return model, processor


def build_llava(
    words: list[str], image_size: int = 32, patch_size: int = 8, hidden: int = 32, layers: int = 2, seed: int = 0
):
    """A small ``LlavaForConditionalGeneration`` as LLaVA-1.5 is made (a CLIP vision tower, LLaVA's projector and
    a Llama decoder) in eval mode, and its ``LlavaProcessor`` with a chat template, around
    ``build_vlm_tokenizer(words)``."""
    from transformers import CLIPImageProcessor

    vision = dict(model_type="clip_vision_model", **_vision_tower(hidden, layers, image_size, patch_size))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    tokenizer = build_vlm_tokenizer(words)
    model, processor = llava(tokenizer, vision, image_processor, patch_size, hidden, layers, "default", seed)
    return model.eval(), processor


def save_random_llava(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny LLaVA with its chat-template processor under ``directory``."""
    model, processor = build_llava(words, image_size=image_size, seed=seed)
    return _save(directory, model, processor)


def _qformer(hidden: int = 32, vocab_size: int = 64) -> dict:
    return dict(**_tower(hidden, 1), encoder_hidden_size=hidden, vocab_size=vocab_size)


def decoder_vocabulary(tokenizer) -> dict:
    """The part of a decoder's config that agrees with ``tokenizer``: its vocabulary, length limit and the
    padding, start and end tokens ``generate`` uses."""
    return dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _opt_decoder(layers: int, **vocabulary) -> dict:
    """A small OPT decoder, BLIP-2's language model in its OPT checkpoints."""
    return dict(
        model_type="opt",
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        **vocabulary,
    )


def build_blip2(words: list[str], image_size: int = 32, seed: int = 0):
    """A small ``Blip2ForConditionalGeneration`` (a vision tower, a Q-Former with 4 queries, an OPT decoder) and
    its ``Blip2Processor``, which puts one ``<image>`` token per query in front of the prompt, as BLIP-2's does.
    No chat template: BLIP-2 continues a plain prompt."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    tokenizer = build_vlm_tokenizer(words, image_token=False)
    text = _opt_decoder(layers=2, **decoder_vocabulary(tokenizer))
    config = Blip2Config(
        vision_config=_vision_tower(32, 1, image_size, 8),
        qformer_config=_qformer(),
        text_config=text,
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    return model, Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=4)


def save_random_blip2(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny BLIP-2 captioner with its processor under ``directory``."""
    return _save(directory, *build_blip2(words, image_size, seed))


def save_random_blip2_itm(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``Blip2ForImageTextRetrieval`` (BLIP-2's matcher: a vision tower and a
    Q-Former with ITM and ITC heads) with a processor whose tokenizer is the Q-Former's (BERT's WordPiece, as in
    ``Salesforce/blip2-itm-vit-g``)."""
    import torch
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, Blip2Processor, BlipImageProcessor

    tokenizer = build_tokenizer(words)
    config = Blip2Config(
        vision_config=_vision_tower(32, 1, image_size, 8),
        qformer_config=dict(
            _qformer(vocab_size=len(tokenizer)),
            max_position_embeddings=tokenizer.model_max_length,
            pad_token_id=tokenizer.pad_token_id,
            use_qformer_text_input=True,  # the matcher reads the caption through the Q-Former
        ),
        num_query_tokens=4,
        image_text_hidden_size=16,
    )
    torch.manual_seed(seed)
    model = Blip2ForImageTextRetrieval(config).eval()
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    return _save(directory, model, Blip2Processor(image_processor=image_processor, tokenizer=tokenizer))


def save_random_git(directory: Path, words: list[str], image_size: int = 32, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``GitForCausalLM`` (GIT: a CLIP-style vision tower whose tokens prefix a
    BERT-style decoder) with a ``GitProcessor`` (``build_tokenizer``'s WordPiece, as GIT's BERT tokenizer: texts
    start with ``[CLS]``, captions end at ``[SEP]``). No chat template and no prompt needed."""
    import torch
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    tokenizer = build_tokenizer(words)
    config = GitConfig(
        vision_config=_vision_tower(32, 1, image_size, 8),
        vocab_size=len(tokenizer),
        **_tower(32, 2),
        max_position_embeddings=tokenizer.model_max_length + (image_size // 8) ** 2 + 1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    torch.manual_seed(seed)
    model = GitForCausalLM(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return _save(directory, model, GitProcessor(image_processor=image_processor, tokenizer=tokenizer))
