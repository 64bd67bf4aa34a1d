"""Image preprocessing apart from the models: which processors turn an image into the same pixels, and the pixels.

A run's captioner and ITM filter usually share one preprocessing (BLIP-base checkpoints both resize to 384 and
normalise with CLIP's mean and std), and on a GPU the model thread must not spend its time resizing: the
pipeline computes each picture's pixels once per distinct processor, ahead of the models, and hands them in.
"""

from __future__ import annotations


def processor_key(image_processor) -> str:
    """Equal for two image processors that make the same pixels of the same image: their class (a CLIP processor
    crops where a BLIP one stretches) and every setting they serialise."""
    return f"{type(image_processor).__name__}:{image_processor.to_json_string()}"


def image_pixels(image_processor, images: list):
    """``(len(images), channels, height, width)`` float32 pixels of ``images`` (PIL), on the CPU."""
    return image_processor(images, return_tensors="pt")["pixel_values"]


def pixel_rows(image_processor, images: list, pixel_values, start: int, end: int):
    """Pixels of ``images[start:end]``: those rows of ``pixel_values`` when the caller made them ahead, else
    made now."""
    if pixel_values is not None:
        return pixel_values[start:end]
    return image_pixels(image_processor, images[start:end])
