"""Progress of a local run: worker processes' counts summed, with an ETA from the samples per finished shard."""

import json

from capfilt.pipeline.report.progress import ProgressPrinter, WorkerProgress, read_counts


def test_counts_of_several_worker_processes_add_up(tmp_path):
    for pid, counts in ((101, (2, 300, 250, 256)), (102, (1, 200, 190, 128))):
        keys = ("shards", "samples", "kept", "samples_in_done_shards")
        (tmp_path / f"{pid}.json").write_text(json.dumps(dict(zip(keys, counts, strict=True))))
    (tmp_path / "103.json.tmp").write_text("{half a fi")  # a rename in progress is not read
    assert read_counts(str(tmp_path)) == {"shards": 3, "samples": 500, "kept": 440, "samples_in_done_shards": 384}


def test_the_line_says_done_of_to_do_and_an_eta_from_the_rate(tmp_path):
    lines = []
    printer = ProgressPrinter(str(tmp_path), to_do=8, say=lines.append)
    counts = {"shards": 3, "samples": 500, "kept": 440, "samples_in_done_shards": 384}
    # 128 samples per shard, 8 shards: 1024 expected, 524 to go at 500 / 50 s = 10 samples/s: 52.4 s.
    assert printer.line(counts, elapsed=50.0) == (
        "capfilt: 3/8 shards, 500 samples, 440 kept, 10.0 samples/s, ETA 0:00:52"
    )
    assert printer.line({**counts, "shards": 0, "samples_in_done_shards": 0}, 50.0).endswith("ETA ?")


def test_a_worker_writes_its_counts_where_the_printer_reads_them(tmp_path):
    progress = WorkerProgress(str(tmp_path))
    progress.batch(64, 60)
    progress.batch(36, 30)
    progress.shard(100)
    lines = []
    printer = ProgressPrinter(str(tmp_path), to_do=2, say=lines.append)
    printer.tick(final=True)
    assert lines and lines[0].startswith("capfilt: 1/2 shards, 100 samples, 90 kept")
