"""report.html renders in a real browser; `capfilt report` rebuilds it; `capfilt check` gates an output."""

import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from capfilt.cli import main
from capfilt.pipeline.report.build import build_report
from capfilt.pipeline.report.html import render
from capfilt.pipeline.stats import Stats

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_is_self_contained(messy_run):
    _, out, _ = messy_run
    html = (out / "report.html").read_text()
    assert all(src.startswith("data:image/") for src in re.findall(r"src='([^']*)'", html))
    assert not re.search(r"<(link|script)\b", html)
    for reason in ("undecodable_image", "image_too_large", "no_image", "unsafe_path", "invalid_json"):
        assert reason in html
    assert "threshold" in html and html.count("<svg") >= 2


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_renders_in_headless_chromium(messy_run, tmp_path):
    _, out, _ = messy_run
    shot = tmp_path / "report.png"
    url = (out / "report.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--window-size=1280,2000", f"--screenshot={shot}", url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.resize((64, 100)).getcolors(64 * 100)
    assert len(colours) > 50  # text, bars and thumbnails, not a blank page
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--dump-dom", url], check=True, capture_output=True, timeout=120, text=True
    ).stdout
    assert "ITM scores" in dom and "Dropped samples" in dom and dom.count("<img") >= 3


def test_report_command_rebuilds_from_disk(messy_run, tmp_path):
    _, out, _ = messy_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    original = json.loads((copy / "report.json").read_text())
    (copy / "report.json").write_text(json.dumps({"config": original["config"], "totals": "stale"}))
    (copy / "report.html").unlink()
    (copy / "_SUCCESS").unlink()
    assert main(["report", str(copy)]) == 0
    rebuilt = json.loads((copy / "report.json").read_text())
    assert rebuilt["totals"] == {**original["totals"], "model_seconds": rebuilt["totals"]["model_seconds"]}
    assert rebuilt["histograms"] == original["histograms"] and (copy / "report.html").exists()


def test_check_passes_healthy_output_and_names_failed_gates(messy_run, capsys):
    _, out, _ = messy_run
    assert main(["check", str(out), "--min-kept-fraction", "0.3", "--max-failed-shards", "1"]) == 0
    assert (
        main(
            [
                "check",
                str(out),
                "--min-kept-fraction",
                "0.99",
                "--max-failed-shards",
                "0",
                "--max-dropped-fraction",
                "undecodable_image=0.01",
                "--max-dropped-fraction",
                "no_image=0.5",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "gate failed: min-kept-fraction" in err and "gate failed: max-failed-shards" in err
    assert "gate failed: max-dropped-fraction undecodable_image" in err
    assert "no_image" not in err.split("undecodable_image")[-1]


@pytest.mark.parametrize("command", [["check", "--min-kept-fraction", "0.5"], ["report"], ["eval"]])
def test_commands_refuse_a_folder_without_capfilt_output_and_never_create_it(tmp_path, capsys, command):
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        if folder.name == "empty":
            folder.mkdir()
        argv = [command[0], str(folder), *command[1:]]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no capfilt output here" in err
        assert (folder.is_dir() and not any(folder.iterdir())) or not folder.exists()


def test_check_and_eval_on_an_unfinished_run_say_so(tmp_path, capsys):
    (tmp_path / "00000_stats.json").write_text("{}")  # a shard finished, the report never written
    assert main(["check", str(tmp_path), "--min-kept-fraction", "0.5"]) == 2
    assert "no report.json" in capsys.readouterr().err
    assert main(["check", str(tmp_path), "--max-dropped-fraction", "nonsense"]) == 2


@pytest.mark.parametrize(("threshold", "x"), [(0.25, 187.5), (0.8, 512.0)])
def test_threshold_marker_sits_at_the_threshold_on_the_score_axis(threshold, x):
    # The plot spans 590 px from x=40 (score 0) to x=630 (score 1).
    report = build_report(Stats(shards=1), {"name": "t", "filter": {"threshold": threshold}})
    html = render(report)
    marker = re.search(r"<line x1='([\d.]+)' y1='6' x2='([\d.]+)'[^>]*stroke-dasharray", html)
    assert marker and float(marker.group(1)) == float(marker.group(2)) == x
    assert f"threshold {threshold}</text>" in html
    assert "stroke-dasharray" not in render(build_report(Stats(shards=1), {"name": "t", "filter": {}}))


def test_report_lists_shards_explains_the_score_and_shows_each_candidate_once(messy_run):
    _, out, _ = messy_run
    html = (out / "report.html").read_text()
    shards = re.search(r"<h2>Shards</h2><table>(.*?)</table>", html).group(1)
    assert re.findall(r"<tr><td>(\d+)</td><td>(\w+)</td>", shards) == [
        ("00000", "ok"),
        ("00001", "ok"),
        ("00002", "truncated"),
        ("00003", "ok"),
        ("00004", "failed"),
    ]
    assert "ITM score: the filter's probability that caption and image match</text>" in html
    assert ">captions</text>" in html
    for card in re.findall(r"<div class='ex'>.*?</ul>", html):
        texts = re.findall(r"<li[^>]*>synthetic: (.*?)(?: <span class='muted'>×\d+</span>)? <span", card)
        assert len(texts) == len(set(texts))


def test_an_evaluation_recorded_later_appears_in_the_page(messy_run, tmp_path):
    from capfilt.pipeline.report.build import update_report

    out = tmp_path / "out"
    shutil.copytree(messy_run[1], out)
    evaluation = {"kept_accuracy": 0.9871, "yield": 0.5, "clean_yield": 0.49, "web_accuracy": 0.4}
    ablation = [{"name": "capfilt", "kept": 5, "accuracy": 0.8, "yield": 0.5, "clean_yield": 0.4}]
    update_report(str(out), {"evaluation": evaluation, "ablation": ablation})
    assert json.loads((out / "report.json").read_text())["evaluation"] == evaluation
    html = (out / "report.html").read_text()
    assert "ground truth" in html and "0.987" in html and "<td>capfilt</td><td>5</td><td>0.800</td>" in html


@pytest.mark.parametrize("argv", [["eval"], ["check", "--min-accuracy", "0.9"]])
def test_accuracy_on_output_without_ground_truth_is_refused_not_reported_as_zero(messy_run, capsys, argv):
    _, out, _ = messy_run
    assert main([argv[0], str(out), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gt_caption" in err and "0.000" not in err
