"""How a captioner decodes, the same for every family: ``generate`` options from ``captioner.decoding``."""

from __future__ import annotations

NUCLEUS, GREEDY, BEAM = "nucleus", "greedy", "beam"
DECODINGS = (NUCLEUS, GREEDY, BEAM)
# What a chat-template captioner is asked, after the image, unless captioner.instruction says otherwise.
DEFAULT_INSTRUCTION = "Write a short caption for this image."


def captions_per_image(decoding: str, num_captions: int) -> int:
    """Captions one image gets: ``num_captions`` sampled or beams returned; greedy decoding has one to give."""
    return min(num_captions, 1) if decoding == GREEDY else num_captions


def generate_options(decoding: str, num_captions: int, top_p: float, min_length: int, max_length: int) -> dict:
    """``generate`` keyword arguments for ``num_captions`` captions (``captions_per_image``) of between
    ``min_length`` and ``max_length`` new tokens.

    ``nucleus``: BLIP's sampling, ``top_p`` of the distribution at temperature 1 with no top-k cut (a checkpoint's
    generation config may set both; CapFilt's diversity comes from here). ``greedy``: the most likely caption.
    ``beam``: a beam search of ``num_captions`` beams, each returned.
    """
    lengths = dict(min_new_tokens=min_length, max_new_tokens=max_length)
    if decoding == NUCLEUS:
        return dict(do_sample=True, top_p=top_p, top_k=0, num_return_sequences=num_captions, **lengths)
    if decoding == GREEDY:
        return dict(do_sample=False, num_beams=1, **lengths)
    if decoding == BEAM:
        return dict(do_sample=False, num_beams=num_captions, num_return_sequences=num_captions, **lengths)
    raise ValueError(f"unknown decoding {decoding!r}; one of {', '.join(DECODINGS)}")


def tidy(texts: list[str]) -> list[str]:
    """Decoded captions with their whitespace collapsed."""
    return [" ".join(text.split()) for text in texts]
