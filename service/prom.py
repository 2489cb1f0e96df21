"""/metrics: a Prometheus collector that reads the job store at each scrape.

The store is the source of truth, so the numbers survive a restart of the service and every
replica of the API shows the same ones. Names and labels are the contract in ../shared/design.md.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from service.auth import ALL_JOBS, NO_JOBS
from service.calibration import calibration_families
from service.cluster import JOBS_ROW
from service.db import utcnow
from service.states import State
from service.store import JobStore

ERROR_RATIO_BUCKETS = (0.5, 0.75, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0)
PER_JOB = {  # metric name -> (step record field, help)
    "effft_job_step": ("step", "Last optimizer step the job reported"),
    "effft_job_loss": ("loss", "Training loss at the last reported step"),
    "effft_job_tokens_per_second": ("tokens_per_second", "Training tokens per second over all ranks"),
    "effft_job_mfu": ("mfu", "Model FLOPs utilization (0-1) at the last reported step"),
    "effft_job_memory_peak_bytes": ("memory_peak_bytes", "Measured peak memory per GPU in bytes "
                                                         "(CUDA max reserved; CPU peak RSS growth)"),
    "effft_job_eta_seconds": ("eta_seconds", "Estimated seconds until the last step, from the mean step time"),
    "effft_job_memory_predicted_bytes": ("memory_predicted_bytes", "The plan's predicted peak memory per GPU "
                                                                   "in bytes"),
    "effft_job_tokens_per_second_predicted": ("tokens_per_second_predicted", "The plan's predicted tokens per "
                                                                             "second (calibrated)"),
}


def model_label(model: str) -> str:
    """A hub id as it is; a local folder by its name only: this fleet series is public, a user's paths are not."""
    return f"local:{PurePosixPath(model).name}" if model.startswith(("/", "~", ".")) else model


class StoreCollector:
    """`scope`: whose per-job series to show: ALL_JOBS, one owner's name, or NO_JOBS (fleet-level series only)."""

    def __init__(self, store: JobStore, gpu_memory, retention_hours: float, scope: str = ALL_JOBS):
        self.store, self.gpu_memory, self.retention = store, gpu_memory, timedelta(hours=retention_hours)
        self.scope = scope

    def _reported_jobs(self):
        """Running jobs, and jobs that ended within the retention window, that the scope may see."""
        if self.scope == NO_JOBS:
            return []
        recent = utcnow() - self.retention
        jobs = self.store.in_states(State.RUNNING, State.CANCELLING, State.SUCCEEDED, State.FAILED, State.CANCELLED)
        return [j for j in jobs if (j.finished_at is None or j.finished_at >= recent)
                and self.scope in (ALL_JOBS, j.owner)]

    def collect(self):
        states = GaugeMetricFamily("effft_jobs", "Jobs in each state", labels=["state"])
        counts = self.store.counts_by_state()
        for state in State:
            states.add_metric([state.value], counts.get(state.value, 0))
        yield states
        families = {name: GaugeMetricFamily(name, text, labels=["job_id", "name"])
                    for name, (_, text) in PER_JOB.items()}
        reporting = []
        for job in self._reported_jobs():
            latest = self.store.latest_metric(job.id)
            if latest is None:
                continue
            reporting.append(job)
            for name, (field, _) in PER_JOB.items():
                value = latest.record.get(field)
                if value is not None:
                    families[name].add_metric([job.id, job.name], float(value))
        yield from families.values()
        yield self._replans(reporting)
        yield from calibration_families(self.store)
        gpu = GaugeMetricFamily("effft_gpu_memory_bytes", "GPU memory per node and type in bytes: total, held by "
                                "running jobs' placements, used (their measured peaks)", labels=["node", "gpu", "kind"])
        jobs = GaugeMetricFamily("effft_gpu_jobs", "Running jobs packed onto the node's GPUs of this type",
                                 labels=["node", "gpu"])
        for node, name, kind, value in self.gpu_memory(self.store):
            if kind == JOBS_ROW:
                jobs.add_metric([node, name], value)
            else:
                gpu.add_metric([node, name, kind], value)
        yield gpu
        yield jobs
        yield self._error_ratio()

    def _replans(self, jobs):
        """Per job that reported steps: 0 until it runs out of memory, as a counter starts."""
        family = CounterMetricFamily("effft_job_replans", "Times a job was re-planned after running out of memory "
                                     "(or passing its safety line)", labels=["job_id", "name"])
        replans: dict[str, int] = {}
        for attempt in self.store.attempts():
            replans[attempt.job_id] = replans.get(attempt.job_id, 0) + int(attempt.replanned)
        for job in jobs:
            family.add_metric([job.id, job.name], replans.get(job.id, 0))
        return family

    def _error_ratio(self):
        family = HistogramMetricFamily("effft_planner_memory_error_ratio", "Measured / predicted peak memory of "
                                       "finished jobs, by model and GPU", labels=["model", "gpu"])
        groups: dict[tuple[str, str], list[float]] = {}
        for check in self.store.memory_checks():
            groups.setdefault((model_label(check.model), check.gpu), []).append(check.ratio)
        for (model, gpu), ratios in sorted(groups.items()):
            buckets = [(str(edge), sum(r <= edge for r in ratios)) for edge in ERROR_RATIO_BUCKETS]
            family.add_metric([model, gpu], [*buckets, ("+Inf", len(ratios))], sum_value=sum(ratios))
        return family


def make_registry(store: JobStore, gpu_memory, retention_hours: float, scope: str = ALL_JOBS) -> CollectorRegistry:
    """A registry for one scrape: cheap (the collector reads the store only when scraped)."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store, gpu_memory, retention_hours, scope))
    return registry
