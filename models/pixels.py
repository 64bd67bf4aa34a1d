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
    """Pixels of ``images`` (PIL) on the CPU, one row per image: the ``(len(images), channels, height, width)``
    float32 ``pixel_values``, or ``ImageInputs`` where the processor makes more than that per image."""
    made = image_processor(images, return_tensors="pt")
    tensors = {name: value for name, value in made.items() if hasattr(value, "shape")}
    if list(tensors) == ["pixel_values"]:
        return tensors["pixel_values"]
    return ImageInputs(tensors)


class ImageInputs:
    """Every tensor an image processor makes, one row per image, that travels as one ``pixel_values`` tensor does
    (sliced, indexed, moved, joined, stacked): SigLIP 2's native-resolution processor makes each image's patches
    beside its patch mask and patch grid, and the vision tower needs all three.

    Args:
        tensors: name -> tensor whose first dimension is the image (a row's are one image's), as the model's
            ``get_image_features`` takes them by name.
    """

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def __getitem__(self, index) -> ImageInputs:
        return ImageInputs({name: value[index] for name, value in self.tensors.items()})

    def __len__(self) -> int:
        return len(self.tensors["pixel_values"])

    def to(self, *places) -> ImageInputs:
        """Moved to a device and cast to a dtype (``tensor.to``'s arguments); the pixels take the dtype, the masks
        and patch grids keep their integers."""
        import torch

        device = [p for p in places if not isinstance(p, torch.dtype)]
        moved = {name: value.to(*places if value.is_floating_point() else device) for name, value in self.items()}
        return ImageInputs(moved)

    def items(self):
        return self.tensors.items()


def joined(parts: list):
    """Row blocks of pixels (tensors, or ``ImageInputs``) as one, in order."""
    import torch

    if parts and isinstance(parts[0], ImageInputs):
        return ImageInputs({name: torch.cat([part.tensors[name] for part in parts]) for name in parts[0].tensors})
    return torch.cat(parts)


def stacked(rows: list):
    """Single rows of pixels (tensors, or ``ImageInputs``) stacked into a block, in order."""
    import torch

    if rows and isinstance(rows[0], ImageInputs):
        return ImageInputs({name: torch.stack([row.tensors[name] for row in rows]) for name in rows[0].tensors})
    return torch.stack(rows)


def pixel_rows(image_processor, images: list, pixel_values, start: int, end: int):
    """Pixels of ``images[start:end]``: those rows of ``pixel_values`` when the caller made them ahead, else
    made now."""
    if pixel_values is not None:
        return pixel_values[start:end]
    return image_pixels(image_processor, images[start:end])
