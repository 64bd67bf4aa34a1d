"""Which Beam runner a job gets, whether its workers run on this machine, and the pipeline object itself: one
place for every job (``run``, ``select``) to start Beam the same way."""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, PortableOptions

LOCAL_RUNNERS = ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")
# Local workers log warnings only unless --verbose: their INFO lines would interleave with the progress line.
QUIET_WORKERS = "--default_sdk_harness_log_level=WARNING"


def runner_name(options: PipelineOptions) -> str:
    return (options.get_all_options().get("runner") or "").rsplit(".", 1)[-1]


def runs_here(options: PipelineOptions) -> bool:
    """The workers run on this machine: a local runner, or the portable runner with an embedded job service
    and in-process (LOOPBACK) workers."""
    if runner_name(options) in LOCAL_RUNNERS:
        return True
    portable = options.view_as(PortableOptions)
    return portable.job_endpoint == "embed" and portable.environment_type == "LOOPBACK"


def job_options(args: list[str], verbose: bool = False) -> PipelineOptions:
    """``PipelineOptions`` of ``args`` (defaults first, the user's flags last), with local workers quiet unless
    ``verbose``; a flag in ``args`` still wins, and cluster runs keep their workers' own level."""
    options = PipelineOptions(args)
    if runs_here(options) and not verbose:
        options = PipelineOptions([QUIET_WORKERS, *args])
    return options


def job_pipeline(options: PipelineOptions, verbose: bool = False) -> beam.Pipeline:
    """The Beam pipeline a job is wired into and run by (``with job_pipeline(...) as p``)."""
    return beam.Pipeline(runner=_local_process_runner(options, verbose), options=options)


def _local_process_runner(options: PipelineOptions, verbose: bool):
    """For a local multi-process run, the FnApiRunner with capfilt's worker entry point (``worker_main``) in
    place of Beam's; None (the runner the options name) otherwise."""
    direct = options.view_as(DirectOptions)
    if runner_name(options) not in ("DirectRunner", "FnApiRunner") or direct.direct_running_mode != "multi_processing":
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    command = f"{sys.executable} -m capfilt.pipeline.worker_main" + (" --verbose" if verbose else "")
    direct.direct_running_mode = "in_memory"  # else the runner swaps in Beam's own worker command
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(command))
