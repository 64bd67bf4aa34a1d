"""The model stages of a shard: synthetic captions for each live sample, then ITM scores (and contrastive
similarities) for every candidate; ``policy.decide`` then chooses."""

from __future__ import annotations

import hashlib

from .sample import Sample


def batch_seed(seed: int, shard: str, batch_index: int) -> int:
    """The sampling seed of one batch: fixed by the run's seed, the shard's name and the batch's place in it,
    never by the worker or the clock, so any worker reproduces any shard."""
    digest = hashlib.sha256(f"{seed}\0{shard}\0{batch_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def caption_frames(frames: int, mode: str, num_captions: int) -> list[tuple[int, int]]:
    """Which frames of a clip of ``frames`` the captioner writes from, as ``(frame, captions)`` pairs.

    ``middle``: every caption from the middle frame. ``spread``: one caption from each of ``num_captions``
    frames spread evenly over the clip, so the candidates come from different moments and the filter, which
    scores each against every frame, keeps one that holds for the whole clip. ``all``: ``num_captions`` from
    every frame (repeats removed afterwards). An image is a clip of one frame.
    """
    if num_captions == 0 or frames == 0:
        return []
    if mode == "middle" or frames == 1:
        return [(frames // 2, num_captions)]
    if mode == "spread":
        return [(int((j + 0.5) * frames / num_captions), 1) for j in range(num_captions)]
    if mode == "all":
        return [(f, num_captions) for f in range(frames)]
    raise ValueError(f"unknown caption_frames {mode!r}")


def caption_batch(batch: list[Sample], captioner, seed: int, mode: str = "spread", pixels=None) -> None:
    """Synthetic captions for each live sample: images as ever, videos from the frames ``caption_frames`` picks.

    Frames captioned the same number of times share one ``generate`` call; the call with the most captions per
    frame (every image's) gets ``seed``, so a batch of images is captioned exactly as before videos existed.
    ``pixels`` (a ``SharedPixels``) holds the pictures' pixels when they were made ahead.
    """
    live = [s for s in batch if s.live]
    if not live:
        return
    jobs: dict[int, list[tuple[int, int]]] = {}  # captions per frame -> (position in live, frame)
    for position, sample in enumerate(live):
        for frame, count in caption_frames(len(sample.pictures), mode, captioner.num_captions):
            jobs.setdefault(count, []).append((position, frame))
    written: list[list[str]] = [[] for _ in live]
    for number, count in enumerate(sorted(jobs, reverse=True)):
        items = [(live[position], frame) for position, frame in jobs[count]]
        captions = captioner.caption(
            [sample.pictures[frame] for sample, frame in items],
            seed=seed + number,
            num_captions=count,
            pixel_values=pixels.of(captioner, items) if pixels else None,
        )
        for (position, _), texts in zip(jobs[count], captions, strict=True):
            written[position] += texts
    for sample, captions in zip(live, written, strict=True):
        captions = [c for c in captions if c]
        sample.synthetic = list(dict.fromkeys(captions)) if mode == "all" and sample.media == "video" else captions


def caption_after_web_scores(
    batch: list[Sample], captioner, scorer, below: float, seed: int, mode: str = "spread", pixels=None
):
    """``caption_batch`` for only the live samples whose web caption the filter scores under ``below`` (or that
    have none): the filter scores every web caption first, and a sample it trusts that much keeps its web
    caption unchallenged (noted ``captioning_skipped``). Returns the filter's vision states of the batch's live
    frames, for ``score_batch`` to reuse; the web scores stay on the samples."""
    live = [s for s in batch if s.live]
    states = _vision_states(live, scorer, pixels)
    with_web = [s for s in live if s.web_text]
    if with_web:
        clips, texts = [s.pictures for s in with_web], [[s.web_text] for s in with_web]
        scores = scorer.score_clips(clips, texts, _rows(live, with_web, states))
        for sample, (score,) in zip(with_web, scores, strict=True):
            sample.web_score = score
    trusted = [s for s in with_web if s.web_score >= below]
    for sample in trusted:
        sample.note("captioning_skipped", f"web score {sample.web_score:.4f}")
    trusted_ids = {id(s) for s in trusted}
    caption_batch([s for s in live if id(s) not in trusted_ids], captioner, seed, mode, pixels)
    return states


def _vision_states(live: list[Sample], scorer, pixels):
    """The filter's vision states of every frame of ``live``, in order (an image is one frame)."""
    if not live:
        return None
    frames = [frame for sample in live for frame in sample.pictures]
    pictures = [(sample, frame) for sample in live for frame in range(len(sample.pictures))]
    return scorer.vision_states(frames, pixels.of(scorer, pictures) if pixels else None)


def _rows(live: list[Sample], chosen: list[Sample], states):
    """The rows of ``states`` (one per frame of ``live``) that belong to ``chosen``, a sublist of ``live``."""
    if states is None or not chosen:
        return None
    first, rows = 0, {}
    for sample in live:
        rows[id(sample)] = range(first, first + len(sample.pictures))
        first += len(sample.pictures)
    return states[[row for sample in chosen for row in rows[id(sample)]]]


def score_batch(
    batch: list[Sample], scorer, similarity=None, keep_embeddings: bool = False, pixels=None, states=None
) -> None:
    """The filter's scores of every live sample's candidates (BLIP's ITM probability, or a dual encoder's), and
    their contrastive similarity when ``similarity`` is given (the filter's own head, when it is, starts from the
    filter's vision states). A video's frames go through the vision tower once each; its scores pool over them.
    A candidate longer than a model reads is noted (``text_truncated``). ``pixels`` as ``caption_batch``'s.
    ``states``: the filter's vision states of the live frames from ``caption_after_web_scores``, whose web scores
    are kept, not computed again."""
    live = [s for s in batch if s.live]
    if not live:
        return
    # Sampling often repeats a caption; each distinct text is scored once per image.
    candidates = [list(dict.fromkeys(([s.web_text] if s.web_text else []) + s.synthetic)) for s in live]
    note_truncated(live, candidates, {"filter": scorer, "similarity model": similarity})
    clips = [s.pictures for s in live]
    frames = [frame for clip in clips for frame in clip]
    pictures = [(sample, frame) for sample in live for frame in range(len(sample.pictures))]
    web_scored = states is not None
    if states is None:
        states = scorer.vision_states(frames, pixels.of(scorer, pictures) if pixels else None)
    to_score = [
        [t for t in texts if not (web_scored and t == s.web_text)] for s, texts in zip(live, candidates, strict=True)
    ]
    scored = scorer.score_clips(clips, to_score, states) if any(to_score) else [[] for _ in live]
    for sample, texts, scores in zip(live, to_score, scored, strict=True):
        score_of = dict(zip(texts, scores, strict=True))
        if not web_scored:
            sample.web_score = score_of[sample.web_text] if sample.web_text else None
        sample.synthetic_scores = [
            sample.web_score if text == sample.web_text else score_of[text] for text in sample.synthetic
        ]
    if similarity is None:
        return
    if similarity.reuses_vision_of(scorer):
        frame_embeddings = similarity.embed(frames, candidates, vision_states=states)
    else:
        frame_embeddings = similarity.embed(
            frames, candidates, pixel_values=pixels.of(similarity, pictures) if pixels else None
        )
    del states
    # A clip's embedding is the mean of its frames' normalised embeddings (CLIP4Clip's meanP), normalised.
    embeddings = frame_embeddings.pooled([len(clip) for clip in clips])
    for i, (sample, texts) in enumerate(zip(live, candidates, strict=True)):
        similarity_of = dict(zip(texts, embeddings.similarities(i, texts), strict=True))
        sample.web_similarity = similarity_of[sample.web_text] if sample.web_text else None
        sample.synthetic_similarities = [similarity_of[text] for text in sample.synthetic]
        if keep_embeddings:
            sample.image_embedding = embeddings.images[i].numpy()
            sample.text_embeddings = {text: embeddings.text(text).numpy() for text in texts}


def note_truncated(live: list[Sample], candidates: list[list[str]], readers: dict) -> None:
    """Note each candidate longer than a model that scores it reads (``max_text_tokens``): it was scored on a
    prefix, while the output keeps it whole. ``readers`` maps what a user calls each model to it (or None);
    one tokenizer pass per distinct model over the batch's distinct texts."""
    texts = list(dict.fromkeys(text for group in candidates for text in group))
    over: dict[str, list[str]] = {}  # text -> what read only a prefix of it, in words
    seen = set()
    for role, model in readers.items():
        if model is None or (id(model.processor.tokenizer), model.max_text_tokens) in seen:
            continue  # the filter's own ITC head reads what the filter read
        seen.add((id(model.processor.tokenizer), model.max_text_tokens))
        for text, count in zip(texts, model.token_counts(texts), strict=True):
            if count > model.max_text_tokens:
                over.setdefault(text, []).append(f"the {role} read {model.max_text_tokens} of its {count} tokens")
    if not over:
        return
    for sample, group in zip(live, candidates, strict=True):
        for text in group:
            if text in over:
                which = "web caption" if text == sample.web_text else f"synthetic {sample.synthetic.index(text) + 1}"
                sample.note("text_truncated", f"{which}, {', '.join(over[text])}")
