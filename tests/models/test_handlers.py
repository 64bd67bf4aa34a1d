"""The RunInference adapters (``models.handlers``) inside a real Beam pipeline answer what their wrappers answer."""

import apache_beam as beam
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.util import assert_that
from PIL import Image

from capfilt.models.captioner import Captioner
from capfilt.models.handlers import CaptionerModelHandler, ItmModelHandler, SimilarityModelHandler
from capfilt.models.itm import ItmScorer
from capfilt.models.similarity import load_similarity

IMAGES = [Image.new("RGB", (40, 30), (220, 20, 20)), Image.new("RGB", (12, 12), (20, 20, 220))]
PAIRS = list(zip(IMAGES, [["a red circle", "blue", "on the left and right"], ["a small blue square"]]))


def assert_runs_as(handler, examples: list, expected: list) -> None:
    """Run ``handler`` over ``examples`` in ``RunInference`` and check that example ``i``'s inference is
    ``expected[i]`` (scores to 1e-5: a batch's text padding is not that of one example alone).

    The runner is pinned: FnApiRunner is what the pipeline runs on, where the default would be Prism.
    """

    def check(actual):
        got = dict(actual)
        assert sorted(got) == list(range(len(expected))), got
        for i, want in enumerate(expected):
            assert got[i] == pytest.approx(want, abs=1e-5), (i, got[i], want)

    with beam.Pipeline(runner="FnApiRunner") as p:
        inferences = (
            p
            | beam.Create(list(enumerate(examples)))
            | RunInference(KeyedModelHandler(handler))  # keys keep each inference with its example
            | beam.MapTuple(lambda i, result: (i, result.inference))
        )
        assert_that(inferences, check)


def test_captioner_handler_captions_as_the_captioner(tiny_models):
    options = dict(device="cpu", num_captions=2, min_length=2, max_length=4)
    captioner = Captioner.from_pretrained(tiny_models[0], **options)
    # A batch is sampled from one seed, so the captions are the captioner's only for the same batches: one image each.
    expected = [captioner.caption([image], seed=3)[0] for image in IMAGES]
    assert_runs_as(CaptionerModelHandler(tiny_models[0], seed=3, batch_size=1, **options), IMAGES, expected)


def test_scoring_handlers_score_as_their_scorers(tiny_models, tiny_clip):
    itm = tiny_models[1]
    cases = [
        (ItmModelHandler(itm, device="cpu"), ItmScorer.from_pretrained(itm, device="cpu")),
        (SimilarityModelHandler(tiny_clip, device="cpu"), load_similarity(tiny_clip, device="cpu")),
        (SimilarityModelHandler("itc", itm_model=itm, device="cpu"), load_similarity("itc", itm, device="cpu")),
    ]
    for handler, scorer in cases:
        expected = [scorer.score([image], [texts])[0] for image, texts in PAIRS]
        assert_runs_as(handler, PAIRS, expected)


def test_options_reach_the_wrapper(tiny_models):
    scorer = ItmModelHandler(tiny_models[1], device="cpu", max_text_tokens=8).load_model()
    assert isinstance(scorer, ItmScorer) and scorer.max_text_tokens == 8 and scorer.device == "cpu"


def test_itc_handler_needs_the_itm_checkpoint():
    with pytest.raises(ValueError, match="itm_model"):
        SimilarityModelHandler("itc")
