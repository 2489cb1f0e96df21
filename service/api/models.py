"""The API's response bodies, for /docs and clients: the JSON that service/views.py renders, typed.

Stored rows are rendered leniently (views.json_safe) and checked here once more; submit and a job's page answer
with views.job_answer, which builds this shape itself and skips the check (test_fuzz.py checks them against it).
A value a worker or an older version stored that fits no declared type must not turn a listing into a 500:
numbers read from step records go through `Number`, and free-form parts (the spec, a summary, a record's other
fields) are objects of any JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from service.states import State
from service.views import NON_FINITE, number_or_none

NUMBER_SCHEMA = {"anyOf": [{"type": "number"}, {"type": "string", "enum": list(NON_FINITE)}, {"type": "null"}]}
Number = Annotated[int | float | str | None, BeforeValidator(number_or_none), WithJsonSchema(NUMBER_SCHEMA)]
Timestamp = Annotated[str | None, Field(json_schema_extra={"format": "date-time"})]
JsonObject = dict[str, Any]


class ProgressPublic(BaseModel):
    """The job's latest step record."""

    step: Number = None
    total_steps: Number = None
    loss: Number = None
    tokens_per_second: Number = None
    mfu: Number = None
    memory_peak_bytes: Number = None
    memory_predicted_bytes: Number = None
    eta_seconds: Number = None


class JobPublic(BaseModel):
    """A job; the fields after `planned` are null when its stored row cannot be shown (`message` says so)."""

    id: str
    name: str
    owner: str
    state: State
    cause: str | None = Field(description="why it failed: infeasible, bad_input, oom, worker or system")
    planned: bool
    message: str | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    started_at: Timestamp = None
    finished_at: Timestamp = None
    ray_job_id: str | None = None
    gpus: int | None = None
    gpu_type: str | None = None
    placement: JsonObject | None = Field(default=None, description="where the scheduler packed it: devices, bytes "
                                         "held, the share of each device, the cap the worker holds itself to")
    progress: ProgressPublic | None = None
    summary: JsonObject | None = Field(default=None, description="the worker's run summary, once it has ended")
    spec: Annotated[JsonObject | None, WithJsonSchema({"anyOf": [{"$ref": "#/components/schemas/JobSpec"},
                                                                 {"type": "null"}]})] = None


class JobsPublic(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="pass it as `cursor` for the next page; null on the last")


class EventPublic(BaseModel):
    """One state change of a job."""

    model_config = ConfigDict(populate_by_name=True)

    at: Timestamp
    from_: State | None = Field(alias="from")
    to: State
    reason: str | None


class EventsPublic(BaseModel):
    items: list[EventPublic]


def _record_fields(schema: dict) -> None:
    schema["properties"].update({name: NUMBER_SCHEMA for name in ProgressPublic.model_fields if name != "step"})


class MetricPublic(BaseModel):
    """One stored step record: `step`, `stored_at`, and the worker's fields as it sent them (the usual ones are
    listed)."""

    # documented, not validated: a job's metrics run to 100,000 records, and checking eight number fields of each
    # costs seconds; they go out as the worker sent them (service.records.checked_record nulls non-finite numbers)
    model_config = ConfigDict(extra="allow", json_schema_extra=_record_fields)

    step: int
    stored_at: Timestamp = None


class MetricsPublic(BaseModel):
    items: list[MetricPublic]


class DeviceJobPublic(BaseModel):
    id: str
    held_bytes: int  # its placement: predicted peak + margin + the per-process overhead
    used_bytes: int | None  # its latest measured peak


class DevicePublic(BaseModel):
    index: int
    whole: bool  # an exclusive (or multi-GPU) job has it
    held_bytes: int
    used_bytes: int
    jobs: list[DeviceJobPublic]


class NodePublic(BaseModel):
    node: str
    gpu: str
    count: int
    memory_bytes: int
    free: int | None  # devices no job holds any of
    devices: list[DevicePublic] = []


class InventoryPublic(BaseModel):
    nodes: list[NodePublic]


class CalibrationRow(BaseModel):
    device: str
    family: str
    method: str
    recipe: str = Field(description="precision recipe: fp32, amp or pure")
    runs: int = Field(description="measured runs the factors rest on")
    memory: float = Field(description="measured / predicted peak memory: a cautious upper quantile, shrunk to 1")
    tokens_per_second: float = Field(description="measured / predicted tokens/s: the median, shrunk to 1")
    version: int = Field(description="the fitting rule's version (planner/calibration.py)")


class CalibrationPublic(BaseModel):
    items: list[CalibrationRow]


class RecordsStored(BaseModel):
    stored_steps: int = Field(description="step records in this batch (each stored once, whatever was sent before)")


class HealthPublic(BaseModel):
    ok: bool


class ProblemPublic(BaseModel):
    field: str
    value: Any = Field(description="what was sent, or a short preview of it")
    message: str


class ErrorPublic(BaseModel):
    """Every error: `detail` is a message, a list of field problems (422, 413), or the numbers of a plan that
    cannot fit (422 from POST /v1/plan)."""

    detail: str | list[ProblemPublic] | JsonObject

