"""Driving the weekly dynamic-pricing scenario over the services' REST APIs, as a
client would: start a run, follow it, take the owner's decision, read the timeline.
Used by `stayops demo`, the end-to-end tests and the pricing benchmark; the
reactive scenarios' tasks are read by what they are linked to (`linked_tasks`), and
a run's records by reading the topics back (`records_of_runs`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from stayops_schemas.catalog import TOPICS
from stayops_schemas.subscriptions import consumers_of

TERMINAL = frozenset({"completed", "failed", "needs_attention", "cancelled"})
# The services that read `org.policy.updated`: the saga's guardrails, the decision
# checks and the publish guard.
POLICY_CONSUMERS = consumers_of("org.policy.updated")


@dataclass(frozen=True)
class OrgHandle:
    org_id: str
    owner_user_id: str
    owner_token: str
    agent_user_id: str
    listing_ids: list[str]
    # A property manager's segments (segment -> listing ids) and its people's tokens.
    segments: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_seed(cls, seeded: dict[str, Any]) -> OrgHandle:
        return cls(
            org_id=seeded["org_id"],
            owner_user_id=seeded["users"]["owner"]["user_id"],
            owner_token=seeded["tokens"]["owner"],
            agent_user_id=seeded["users"]["revenue_manager_agent"]["user_id"],
            listing_ids=list(seeded["listing_ids"]),
            segments={k: list(v) for k, v in (seeded.get("segments") or {}).items()},
            tokens=dict(seeded["tokens"]),
        )

    def headers_of(self, member: str) -> dict[str, str]:
        """The bearer header of a seeded member by key (`revenue-manager`, `owner`)."""
        return {"Authorization": f"Bearer {self.tokens[member]}"}

    @property
    def names(self) -> dict[str, str]:
        return {self.owner_user_id: "owner", self.agent_user_id: "AI Revenue Manager"}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.owner_token}"}


class ScenarioError(Exception):
    """The scenario did not go as a client expects; the message says where."""


class PricingClient:
    def __init__(self, urls: dict[str, str], client: httpx.AsyncClient) -> None:
        self.urls = urls
        self.http = client

    async def start_run(
        self, org: OrgHandle, *, threshold_pct: float = 10, monitor_days: int = 0,
        idempotency_key: str | None = None, listing_ids: list[str] | None = None, platform: str | None = None,
    ) -> str:
        """Start `dynamic-pricing` for the org's listings (or `listing_ids`) on
        `platform` (the definition's default, Airbnb, if None)."""
        headers = dict(org.headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        parameters: dict[str, Any] = {"listing_ids": listing_ids or org.listing_ids, "threshold_pct": threshold_pct,
                                      "monitor_days": monitor_days, "owner_user_id": org.owner_user_id}
        if platform is not None:
            parameters["platform"] = platform
        response = await self.http.post(
            f"{self.urls['workflow-service']}/v1/workflows/dynamic-pricing/runs",
            json={"parameters": parameters}, headers=headers,
        )
        if response.status_code not in (200, 201):
            raise ScenarioError(f"starting dynamic-pricing failed: {response.status_code} {response.text}")
        run_id: str = response.json()["id"]
        return run_id

    async def start_portfolio(self, org: OrgHandle, *, monitor_days: int = 0,
                              idempotency_key: str | None = None) -> str:
        """Start `portfolio-pricing` over the org's segments, as its owner."""
        headers = dict(org.headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        parameters = {"segments": [{"segment": s, "listing_ids": ids} for s, ids in org.segments.items()],
                      "monitor_days": monitor_days, "owner_user_id": org.owner_user_id}
        response = await self.http.post(f"{self.urls['workflow-service']}/v1/workflows/portfolio-pricing/runs",
                                        json={"parameters": parameters}, headers=headers)
        if response.status_code not in (200, 201):
            raise ScenarioError(f"starting portfolio-pricing failed: {response.status_code} {response.text}")
        run_id: str = response.json()["id"]
        return run_id

    async def batch_task(self, org: OrgHandle, run_id: str, *, member: str = "revenue-manager",
                         timeout_s: float = 120) -> dict[str, Any]:
        """The batch review task of a portfolio run, as it appears in `member`'s inbox."""
        return await self.decision_task(org, run_id, timeout_s=timeout_s, headers=org.headers_of(member))

    async def run(self, org: OrgHandle, run_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.urls['workflow-service']}/v1/runs/{run_id}", headers=org.headers)
        if response.status_code != 200:
            raise ScenarioError(f"reading run {run_id} failed: {response.status_code} {response.text}")
        run: dict[str, Any] = response.json()
        return run

    async def wait_until(
        self, org: OrgHandle, run_id: str, *, statuses: frozenset[str] = TERMINAL,
        step: str | None = None, timeout_s: float = 120,
    ) -> dict[str, Any]:
        """Poll the run (with a deadline) until its status is one of `statuses`, or it
        waits at `step` when one is given."""
        deadline = time.monotonic() + timeout_s
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                run = await self.run(org, run_id)
            except httpx.TransportError:  # workflow-service restarting
                await asyncio.sleep(0.5)
                continue
            if run["status"] in statuses and (step is None or run.get("current_step") == step):
                return run
            if run["status"] in TERMINAL and run["status"] not in statuses:
                raise ScenarioError(f"run {run_id} ended {run['status']}: {_last_log(run)}")
            await asyncio.sleep(0.2)
        raise ScenarioError(f"run {run_id} still {run.get('status')} at {run.get('current_step')} after "
                            f"{timeout_s:.0f}s: {_last_log(run)}")

    async def decision_task(self, org: OrgHandle, run_id: str, timeout_s: float = 120,
                            headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The decision task of a run, as it appears in the owner's inbox (or the inbox
        of whoever `headers` authenticate)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                response = await self.http.get(f"{self.urls['task-service']}/v1/inbox",
                                               params={"task_type": "decision", "status": "pending"},
                                               headers=headers or org.headers)
            except httpx.TransportError:  # task-service restarting
                await asyncio.sleep(0.5)
                continue
            if response.status_code != 200:
                raise ScenarioError(f"reading the inbox failed: {response.status_code} {response.text}")
            for task in response.json()["items"]:
                if task.get("workflow_run_id") == run_id:
                    found: dict[str, Any] = task
                    return found
            await asyncio.sleep(0.2)
        raise ScenarioError(f"no decision task for run {run_id} in the owner's inbox after {timeout_s:.0f}s")

    async def decide(self, org: OrgHandle, task_id: str, outcome: str, comment: str,
                     changes: list[dict[str, Any]] | dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.urls['task-service']}/v1/tasks/{task_id}/decision",
            json={"outcome": outcome, "comment": comment, "changes": changes},
            headers=headers or org.headers,
        )
        if response.status_code != 200:
            raise ScenarioError(f"deciding task {task_id} failed: {response.status_code} {response.text}")
        task: dict[str, Any] = response.json()
        return task

    async def run_tasks(self, org: OrgHandle, run_id: str) -> list[dict[str, Any]]:
        """The run's tasks, oldest first; a result that travelled by reference (claim
        check) is shown as the stored result its owner serves."""
        response = await self.http.get(f"{self.urls['task-service']}/v1/tasks",
                                       params={"workflow_run_id": run_id, "limit": 200}, headers=org.headers)
        if response.status_code != 200:
            return []
        items: list[dict[str, Any]] = response.json()["items"]
        for task in items:
            ref = (task.get("result") or {}).get("result_ref")
            if ref:
                task["result"] = await self.stored_result(org, ref)
        return sorted(items, key=lambda t: t["created_at"])

    async def stored_result(self, org: OrgHandle, ref: dict[str, Any],
                            listing_id: str | None = None) -> dict[str, Any]:
        """A result stored by its owner (agent-service), as the org may read it."""
        response = await self.http.get(f"{self.urls['agent-service']}/v1/results/{ref['id']}",
                                       params={"listing_id": listing_id} if listing_id else None,
                                       headers=org.headers)
        if response.status_code != 200:
            raise ScenarioError(f"stored result {ref['id']}: {response.status_code} {response.text[:200]}")
        result: dict[str, Any] = response.json()["result"]
        return result

    async def proposal_of(self, org: OrgHandle, decision: dict[str, Any]) -> list[dict[str, Any]]:
        """The nights a decision task proposes, inline or by reference."""
        data = decision.get("data") or {}
        if data.get("proposal_ref"):
            nights: list[dict[str, Any]] = (await self.stored_result(org, data["proposal_ref"]))["recommendations"]
            return nights
        return list(data.get("proposal") or [])


    async def policy_applied(self, org: OrgHandle, event_id: str, timeout_s: float = 60) -> None:
        """Wait until every service that bounds prices by the org's policy has applied
        `org.policy.updated` event `event_id` (its inbox record in `GET /v1/events`), so
        a run started next is judged by that policy, not by the one before it."""
        deadline = time.monotonic() + timeout_s
        waiting = list(POLICY_CONSUMERS)
        while waiting and time.monotonic() < deadline:
            service = waiting[0]
            response = await self.http.get(f"{self.urls[service]}/v1/events", params={"event_id": event_id},
                                           headers=org.headers)
            if response.status_code != 200:
                raise ScenarioError(f"reading {service}'s events failed: {response.status_code} {response.text}")
            if any(c["event_id"] == event_id for c in response.json()["consumed"]):
                waiting.pop(0)
                continue
            await asyncio.sleep(0.1)
        if waiting:
            raise ScenarioError(f"policy {event_id} not applied by {', '.join(waiting)} after {timeout_s:.0f}s")

    async def linked_tasks(self, org: OrgHandle, link: str, *, count: int,
                           until: Callable[[list[dict[str, Any]]], bool] = lambda tasks: True,
                           timeout_s: float = 30) -> list[dict[str, Any]]:
        """The tasks an event automation linked to `link` (a reservation id, a review),
        once there are `count` of them and `until` holds for them."""
        deadline = time.monotonic() + timeout_s
        tasks: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            response = await self.http.get(f"{self.urls['task-service']}/v1/tasks", params={"limit": 200},
                                           headers=org.headers)
            if response.status_code != 200:
                raise ScenarioError(f"reading the tasks failed: {response.status_code} {response.text}")
            tasks = sorted((t for t in response.json()["items"] if (t.get("data") or {}).get("link") == link),
                           key=lambda t: str(t["data"].get("link_key")))
            if len(tasks) >= count and until(tasks):
                return tasks
            await asyncio.sleep(0.2)
        raise ScenarioError(f"{count} task(s) linked to {link} not as expected after {timeout_s:.0f}s: "
                            f"{[(t['title'], t['status']) for t in tasks]}")


async def records_of_runs(bootstrap: str, run_ids: set[str]) -> list[Any]:
    """Every record on every topic whose correlationid is one of the runs, read back
    from the broker (a whole PropCo run's records, large ones too)."""
    wanted = {run_id.encode() for run_id in run_ids}
    consumer = AIOKafkaConsumer(*(t.name for t in TOPICS), bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
    await consumer.start()
    found: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            if not batch:
                return found
            found.extend(r for part in batch.values() for r in part
                         if dict(r.headers).get("ce_correlationid") in wanted)
    finally:
        await consumer.stop()


def record_size(record: Any) -> int:
    """A Kafka record's bytes: value, key and headers."""
    headers = sum(len(k) + len(v or b"") for k, v in record.headers or ())
    return len(record.value or b"") + len(record.key or b"") + headers


async def sources_of_run(bootstrap: str, run_id: str) -> set[str]:
    """Who announced something with `correlationid` = the run id, on every topic."""
    return {dict(record.headers)["ce_source"].decode() for record in await records_of_runs(bootstrap, {run_id})}


def run_messages(run: dict[str, Any]) -> str:
    """A run's log, a line an entry (`actor: message`), for assertion messages."""
    return "\n".join(f"{e['actor']}: {e['message']}" for e in run["log"])


def _last_log(run: dict[str, Any]) -> str:
    log = run.get("log") or []
    return log[-1]["message"] if log else "(no log)"


def timeline(
    run: dict[str, Any], tasks: list[dict[str, Any]], *, names: dict[str, str] | None = None, top: int = 5
) -> list[str]:
    """A readable account of a run: who did what, when and why, and which prices changed.
    `names` turns user ids into who they are."""
    names = names or {}
    lines = [f"run {run['id']}  {run['workflow_key']} v{run['workflow_version']}  -> {run['status']}"]
    for entry in run.get("log", []):
        at = str(entry["at"])[11:19]
        actor = names.get(entry["actor"], entry["actor"])
        lines.append(f"  {at}  {actor:<20} {entry['message']}")
    for task in tasks:
        result = task.get("result") or {}
        recommendations = result.get("recommendations") or []
        if not recommendations:
            continue
        changed = sorted(recommendations, key=lambda r: -abs(float(r.get("change_pct", 0))))[:top]
        who = names.get(str(task.get("assigned_to")), task.get("assigned_to"))
        lines.append(f"  prices proposed by {who} (largest changes of {len(recommendations)} nights):")
        for rec in changed:
            factors = ", ".join(f"{f['name']} {float(f['effect_pct']):+.0f}%" for f in rec.get("factors", [])
                                if float(f.get("effect_pct", 0)) != 0)
            lines.append(
                f"    {rec['listing_id'][:8]} {rec['date']}  {rec['current_price']} -> {rec['recommended_price']} "
                f"({float(rec['change_pct']):+.1f}%, confidence {float(rec['confidence']):.2f}): {factors}"
            )
    return lines
