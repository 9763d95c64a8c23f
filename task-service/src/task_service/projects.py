"""Projects and their milestones: create, edit, read, and the roll-ups of their
tasks (done / total, and the expected finish from the open work)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stayops_kit.auth import Caller
from stayops_kit.outbox import UnitOfWork
from task_service import store
from task_service.domain import MilestoneNotFound, ProjectNotFound


@dataclass(frozen=True)
class Rollup:
    """A project's or milestone's tasks: done (completed or cancelled) of all, how
    many are open, and when the open work is expected to be finished."""

    done: int
    total: int
    open: int
    expected_finish: datetime | None


def expected_finish(open_tasks: int, latest_due: datetime | None, median_s: float | None,
                    now: datetime) -> datetime | None:
    """The later of the latest due time of the open tasks and now + open tasks times the
    median time a completed task took (created to completed); None when nothing is
    open, or no open task has a due time and no task was completed yet."""
    if open_tasks == 0:
        return None
    estimates = [] if latest_due is None else [latest_due]
    if median_s is not None:
        estimates.append(now + timedelta(seconds=math.ceil(open_tasks * median_s)))
    return max(estimates) if estimates else None


def rollups(rows: Mapping[str | None, Mapping[str, Any]], now: datetime) -> tuple[Rollup, dict[str | None, Rollup]]:
    """The project's roll-up and each milestone's (None: tasks in no milestone)."""
    per: dict[str | None, Rollup] = {}
    durations: list[float] = []
    for milestone_id, row in rows.items():
        durations.extend(float(d) for d in row["durations"] or ())
        per[milestone_id] = Rollup(int(row["done"]), int(row["total"]), int(row["open"]),
                                   expected_finish(int(row["open"]), row["latest_due"], row["median_s"], now))
    open_tasks = sum(r.open for r in per.values())
    dues = [row["latest_due"] for row in rows.values() if row["latest_due"] is not None]
    project = Rollup(sum(r.done for r in per.values()), sum(r.total for r in per.values()), open_tasks,
                     expected_finish(open_tasks, max(dues) if dues else None,
                                     statistics.median(durations) if durations else None, now))
    return project, per


async def create_project(uow: UnitOfWork, caller: Caller, fields: dict[str, Any]) -> dict[str, Any]:
    now = uow.clock.now()
    values = {"id": uow.ids(), "org_id": caller.org_id, "created_by": caller.user_id, "created_at": now,
              "updated_at": now, **fields}
    await store.insert_project(uow.conn, values)
    return values


async def get_project(uow: UnitOfWork, caller: Caller, project_id: str, *, for_update: bool = False
                      ) -> dict[str, Any]:
    project = await store.get_project(uow.conn, caller.org_id, project_id, for_update=for_update)
    if project is None:
        raise ProjectNotFound(project_id)
    return project


async def edit_project(uow: UnitOfWork, caller: Caller, project_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    project = await get_project(uow, caller, project_id, for_update=True)
    values = {**changes, "updated_at": uow.clock.now()}
    await store.update_project(uow.conn, caller.org_id, project_id, values)
    return {**project, **values}


async def add_milestone(uow: UnitOfWork, caller: Caller, project_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    await get_project(uow, caller, project_id)
    values = {"id": uow.ids(), "org_id": caller.org_id, "project_id": project_id,
              "created_at": uow.clock.now(), "updated_at": None, **fields}
    await store.insert_milestone(uow.conn, values)
    return values


async def edit_milestone(uow: UnitOfWork, caller: Caller, project_id: str, milestone_id: str,
                         changes: dict[str, Any]) -> dict[str, Any]:
    """Change a milestone of the project (404 for another project's or org's)."""
    await get_project(uow, caller, project_id)
    milestone = await store.get_milestone(uow.conn, caller.org_id, milestone_id, for_update=True)
    if milestone is None or milestone["project_id"] != project_id:
        raise MilestoneNotFound(milestone_id, project_id)
    values = {**changes, "updated_at": uow.clock.now()}
    await store.update_milestone(uow.conn, caller.org_id, milestone_id, values)
    return {**milestone, **values}


async def placement(uow: UnitOfWork, org_id: str, project_id: str | None, milestone_id: str | None
                    ) -> tuple[str | None, str | None]:
    """A task's project and milestone, checked to be of the org (404 otherwise): a
    milestone places the task in its project, and must be of the project named."""
    if milestone_id is not None:
        milestone = await store.get_milestone(uow.conn, org_id, milestone_id)
        if milestone is None or (project_id is not None and milestone["project_id"] != project_id):
            raise MilestoneNotFound(milestone_id, project_id)
        return milestone["project_id"], milestone_id
    if project_id is not None and await store.get_project(uow.conn, org_id, project_id) is None:
        raise ProjectNotFound(project_id)
    return project_id, None
