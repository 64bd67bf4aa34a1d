"""``models.base.PretrainedModel``: every wrapper loads its checkpoint the same way, and only from safetensors."""

from pathlib import Path

import pytest
import torch
from transformers import BlipForImageTextRetrieval, BlipProcessor, CLIPModel, CLIPProcessor

from capfilt.models.captioner import Captioner
from capfilt.models.itm import ItmScorer
from capfilt.models.similarity import DualEncoder, ItcSimilarity

CLASSES = {  # what the family table loads each checkpoint with
    Captioner: ("BlipForConditionalGeneration", "BlipProcessor"),
    ItmScorer: ("BlipForImageTextRetrieval", "BlipProcessor"),
    ItcSimilarity: ("BlipForImageTextRetrieval", "BlipProcessor"),
    DualEncoder: ("CLIPModel", "CLIPProcessor"),
}


def test_each_wrapper_loads_its_familys_classes_in_eval_mode_on_its_device_and_dtype(tiny_models, tiny_clip):
    checkpoints = [tiny_models[0], tiny_models[1], tiny_models[1], tiny_clip]
    for (wrapper, classes), name in zip(CLASSES.items(), checkpoints, strict=True):
        loaded = wrapper.from_pretrained(name, device="cpu", dtype="bfloat16")
        assert (type(loaded.model).__name__, type(loaded.processor).__name__) == classes
        assert loaded.image_processor is loaded.processor.image_processor
        assert not loaded.model.training and loaded.model.dtype == torch.bfloat16 and loaded.device == "cpu"
    model, processor, device = DualEncoder.load(tiny_clip, device="cpu")
    assert isinstance(model, CLIPModel) and isinstance(processor, CLIPProcessor) and model.dtype == torch.float32


def test_weights_load_only_from_safetensors(tiny_models, tmp_path):
    """A checkpoint whose weights are only a pickle is refused before anything unpickles it."""
    for item in Path(tiny_models[1]).iterdir():
        if item.suffix != ".safetensors":
            (tmp_path / item.name).write_bytes(item.read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"a pickle that must never be unpickled")
    with pytest.raises(OSError):
        ItmScorer.from_pretrained(str(tmp_path))
    # The same files with the safetensors weights back load.
    model = BlipForImageTextRetrieval.from_pretrained(tiny_models[1])
    model.save_pretrained(tmp_path)
    assert isinstance(ItmScorer.from_pretrained(str(tmp_path)).processor, BlipProcessor)
