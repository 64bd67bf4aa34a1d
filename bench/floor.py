"""The floor a capfilt run is measured against: the same model work written straight against transformers and
torch, as a user would write it without capfilt. Nothing here imports capfilt (a test checks), so no cost inside
the project's wrappers can hide in the floor.

Per batch of images: one image preprocessing, shared by both models when their image processors are configured
alike (BLIP's base pair, the demo pair: what a careful engineer writes, and no more work than the pipeline does),
one ``generate`` with nucleus sampling and ``num_return_sequences``, the ITM vision tower once per image, and one
text-encoder pass over the whole batch's candidates (the web caption plus the distinct synthetic ones). Reads
the tars with ``tarfile`` and decodes JPEGs with Pillow; writes nothing but a JSON line: images, wall seconds
since the interpreter started (imports and model loading included), wall and CPU seconds per phase, and with
``--scores FILE`` every web caption's ITM score by key, for checking that the pipeline did the same work.

    python -m bench.floor --input 'shards/*.tar' --captioner DIR --itm DIR [--num-captions 2 --length 16]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import tarfile
import time

STARTED = time.monotonic()


class Phases:
    """Wall and CPU seconds (the whole process's) spent in each named phase."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._mark = (STARTED, 0.0)

    def done(self, name: str) -> None:
        now = (time.monotonic(), time.process_time())
        self.seconds[name] = self.seconds.get(name, 0.0) + now[0] - self._mark[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + now[1] - self._mark[1]
        self._mark = now


def read_samples(pattern: str):
    """(key, image bytes, web caption) of every sample with a jpg or png in the matching tars, in file and member
    order."""
    for path in sorted(glob.glob(pattern)):
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
        for key, members in samples.items():
            image = members.get("jpg") or members.get("png")
            if image is not None:  # the pipeline drops a sample without an image before any model work
                yield key, image, members.get("txt", b"").decode()


def caption(model, processor, pixel_values, args, torch) -> list[list[str]]:
    images = len(pixel_values)
    inputs = processor.tokenizer([args.prompt.strip()] * images, return_tensors="pt").to(model.device)
    output = model.generate(
        pixel_values=pixel_values,
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        do_sample=True,
        top_p=args.top_p,
        top_k=0,
        num_return_sequences=args.num_captions,
        min_new_tokens=args.length if args.min_length is None else args.min_length,
        max_new_tokens=args.length,
    )
    # generate() returns the prompt without its closing [SEP], then the new tokens.
    texts = processor.batch_decode(output[:, inputs["input_ids"].shape[1] - 1 :], skip_special_tokens=True)
    n = args.num_captions
    return [texts[i * n : (i + 1) * n] for i in range(images)]


def pixel_values(processor, images, model):
    """``images`` resized and normalised by ``processor``'s image processor, in ``model``'s dtype and device."""
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    return pixels.to(model.device, model.dtype)


def match_scores(model, processor, pixel_values, candidates: list[list[str]], torch) -> list[list[float]]:
    """ITM match probabilities, each image's vision features computed once and shared by its candidates."""
    texts = [text for row in candidates for text in row]
    inputs = processor.tokenizer(texts, padding="longest", truncation=True, return_tensors="pt").to(model.device)
    features = model.vision_model(pixel_values=pixel_values).last_hidden_state
    owner = torch.tensor([i for i, row in enumerate(candidates) for _ in row], device=model.device)
    image_embeds = features[owner]
    states = model.text_encoder(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=model.device),
    ).last_hidden_state
    probabilities = torch.softmax(model.itm_head(states[:, 0, :]).float(), dim=-1)[:, 1].tolist()
    out, position = [], 0
    for row in candidates:
        out.append(probabilities[position : position + len(row)])
        position += len(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="glob of .tar shards")
    parser.add_argument("--captioner", required=True)
    parser.add_argument("--itm", required=True)
    parser.add_argument("--prompt", default="a picture of ")
    parser.add_argument("--num-captions", type=int, default=2)
    parser.add_argument("--length", type=int, default=16, help="most generated tokens per caption")
    parser.add_argument("--min-length", type=int, help="fewest generated tokens per caption (default: --length)")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scores", help="write {key: web caption's ITM score} to this JSON file")
    args = parser.parse_args()

    phases = Phases()
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipProcessor

    phases.done("model imports")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    captioner = BlipForConditionalGeneration.from_pretrained(args.captioner, dtype=dtype).to(args.device).eval()
    captioner_processor = BlipProcessor.from_pretrained(args.captioner)
    itm = BlipForImageTextRetrieval.from_pretrained(args.itm, dtype=dtype).to(args.device).eval()
    itm_processor = BlipProcessor.from_pretrained(args.itm)
    shared = captioner_processor.image_processor.to_dict() == itm_processor.image_processor.to_dict()
    phases.done("model load")

    samples = list(read_samples(args.input))
    phases.done("read and decode")
    web_scores: dict[str, float] = {}
    with torch.inference_mode():
        for start in range(0, len(samples), args.batch_size):
            batch = samples[start : start + args.batch_size]
            phases.done("other")
            images = [Image.open(io.BytesIO(data)).convert("RGB") for _, data, _ in batch]
            phases.done("read and decode")
            pixels = pixel_values(captioner_processor, images, captioner)
            itm_pixels = pixels if shared else pixel_values(itm_processor, images, itm)
            phases.done("pixels")
            torch.manual_seed(start)
            synthetic = caption(captioner, captioner_processor, pixels, args, torch)
            phases.done("caption")
            candidates = [list(dict.fromkeys([web, *texts])) for (_, _, web), texts in zip(batch, synthetic)]
            scores = match_scores(itm, itm_processor, itm_pixels, candidates, torch)
            phases.done("itm")
            web_scores.update({key: row[0] for (key, _, _), row in zip(batch, scores)})
    if args.scores:
        with open(args.scores, "w") as handle:
            json.dump(web_scores, handle)
    phases.done("other")
    seconds = {name: round(value, 3) for name, value in phases.seconds.items()}
    cpu = {name: round(value, 3) for name, value in phases.cpu.items()}
    report = {"images": len(samples), "seconds": time.monotonic() - STARTED, "phases": seconds, "cpu": cpu}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
