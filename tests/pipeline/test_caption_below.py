"""`captioner.caption_below`: the filter scores web captions first and only images it does not trust that much are
captioned; everything else is the run it would have been."""

from __future__ import annotations

import pytest

from capfilt.models.captioner import Captioner
from tests.helpers import rows, run


@pytest.fixture
def reference(tiny_models, shards, tmp_path):
    """The run without the option, in float32 so scores compare to rounding."""
    assert run(tiny_models, shards, tmp_path / "ref", "--set", "runtime.dtype=float32") == 0
    return {r["key"]: r for r in rows(tmp_path / "ref")}


def test_only_images_under_the_web_score_are_captioned(tiny_models, shards, tmp_path, reference, monkeypatch):
    web = sorted(r["web_score"] for r in reference.values() if r["web_score"] is not None)
    below = web[len(web) // 2]  # half of the captioned samples trusted, half not
    captioned = []
    original = Captioner.caption

    def counting(self, images, seed, num_captions=None, pixel_values=None):
        captioned.append(len(images))
        return original(self, images, seed, num_captions, pixel_values)

    monkeypatch.setattr(Captioner, "caption", counting)
    out = tmp_path / "out"
    options = ["--set", "runtime.dtype=float32", "--set", f"captioner.caption_below={below}"]
    assert run(tiny_models, shards, out, *options) == 0
    got = {r["key"]: r for r in rows(out)}
    assert got.keys() == reference.keys()  # every sample accounted for
    trusted = {k for k, r in got.items() if r["web_score"] is not None and r["web_score"] >= below}
    assert 0 < len(trusted) < len(got)
    for key, row in got.items():
        # The web caption's score is the one the full run gives it: scored alone or beside the synthetic ones.
        if row["web_score"] is not None:
            assert row["web_score"] == pytest.approx(reference[key]["web_score"], abs=1e-5)
        if key in trusted:
            assert row["synthetic_texts"] == [] and "captioning_skipped" in row["error"]
            assert row["status"] == "kept" and row["caption"] == row["web_text"]
        else:
            assert len(row["synthetic_texts"]) > 0 and "captioning_skipped" not in (row["error"] or "")
            assert len(row["synthetic_scores"]) == len(row["synthetic_texts"])
    # The captioner saw exactly the images the filter did not trust (no caption counts as untrusted).
    assert sum(captioned) == len(got) - len(trusted)


def test_a_trusted_web_caption_spares_the_captioner_entirely(tiny_models, shards, tmp_path):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out, "--set", "captioner.caption_below=-1") == 0
    got = rows(out)
    with_web = [r for r in got if r["web_text"]]
    assert with_web and all(r["synthetic_texts"] == [] for r in with_web)
    # A sample with no web caption is captioned whatever the option says.
    assert all(r["synthetic_texts"] for r in got if not r["web_text"] and r["status"] == "kept")


@pytest.mark.parametrize("value", ["1.5", "yes"])
def test_a_bad_caption_below_is_refused_in_one_line(tiny_models, shards, tmp_path, value, capsys):
    out = tmp_path / "out"
    assert run(tiny_models, shards, out, "--set", f"captioner.caption_below={value}") == 2
    err = capsys.readouterr().err.strip()
    assert "captioner.caption_below" in err and len(err.splitlines()) == 1
