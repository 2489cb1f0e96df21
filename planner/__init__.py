"""effft's planner: pure (no torch, no ray, no database, no clock). Data in, plan out.

    from planner import load_job, load_profile, plan_job, Inventory, parse_gpu_name
    plan = plan_job(load_job("job.yaml"), Inventory.single(parse_gpu_name("A10G")))
"""

from planner.calibration import Calibration, CalibrationTable, Observation
from planner.catalog import CATALOG, GpuSpec, Inventory, cpu_with_memory, parse_gpu_name
from planner.errors import FieldProblem, InfeasibleError, ModelProfileError, PlannerError, SpecError
from planner.memory import MemoryBreakdown, estimate_memory
from planner.objective import Queue
from planner.plan import SCHEMA_VERSION, Decision, Plan, PlanVersionError, RunSettings, load_plan
from planner.profile import ModelProfile, load_profile, profile_from_config
from planner.spec import JobSpec, load_job, parse_job
from planner.tree import make_plan


def plan_job(spec: JobSpec, inventory: Inventory, calibration: CalibrationTable | None = None,
             seq_len: int | None = None, queue: Queue | None = None) -> Plan:
    """Plan a validated job against an inventory, reading the model's config.json."""
    profile = load_profile(spec.model.path, spec.model.revision)
    return make_plan(spec, profile, inventory, calibration=calibration or CalibrationTable({}), seq_len=seq_len,
                     queue=queue)


__all__ = ["CATALOG", "Calibration", "CalibrationTable", "Decision", "FieldProblem", "GpuSpec", "InfeasibleError",
           "Inventory", "JobSpec", "MemoryBreakdown", "ModelProfile", "ModelProfileError", "Observation", "Plan",
           "PlanVersionError", "PlannerError", "Queue", "RunSettings", "SCHEMA_VERSION", "SpecError", "cpu_with_memory",
           "estimate_memory", "load_job", "load_plan", "load_profile", "make_plan", "parse_gpu_name", "parse_job",
           "plan_job", "profile_from_config"]
