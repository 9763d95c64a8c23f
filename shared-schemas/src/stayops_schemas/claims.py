"""The claim check: a result too big to travel in an event is stored by the service
that made it, and the event carries a `ResultRef` to it (its owner, id, size, the
sha256 of its canonical JSON and a bounded summary) instead of the detail.
Readers fetch the detail over the owner's REST API and check its digest.

A result that carries a ref keeps its summary's keys at the top level (so a rule
such as `steps.analysis.result.max_abs_change_pct < 10` reads it as before) and the
ref under `result_ref`. Small results keep travelling inline. Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stayops_schemas.errors import SchemaError

# Where a result names its stored detail.
RESULT_REF_KEY = "result_ref"
# Results up to this much canonical JSON travel inline (services read
# `STAYOPS_RESULT_INLINE_LIMIT_BYTES`); bigger ones are stored and referenced.
DEFAULT_INLINE_LIMIT_BYTES = 64 * 1024
# A summary rides in every event that carries the ref: it must stay small.
MAX_SUMMARY_BYTES = 4 * 1024


class DetailMismatch(SchemaError):
    """Fetched detail that is not what the ref names (another digest): refuse it."""


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """The one byte form a digest is taken of: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default).encode()


def digest_of(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


def fits_inline(value: Any, limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES) -> bool:
    """Whether `value` may travel in an event as it is (its canonical JSON within the limit)."""
    return len(canonical_json(value)) <= limit_bytes


class ResultRef(BaseModel):
    """A stored result: who keeps it (`service`, whose REST API serves it), what kind
    of result it is (the skill), its id there, its size and digest, and a summary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str = Field(min_length=1, examples=["agent-service"])
    kind: str = Field(min_length=1, examples=["pricing"])
    id: str = Field(min_length=1)
    org_id: str = Field(min_length=1)
    size: int = Field(ge=0, description="Bytes of the result's canonical JSON.")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the canonical JSON.")
    summary: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _summary_is_small(self) -> Self:
        size = len(canonical_json(self.summary))
        if size > MAX_SUMMARY_BYTES:
            raise ValueError(f"a ref's summary is {size} bytes; at most {MAX_SUMMARY_BYTES}")
        return self

    def verify(self, detail: Any) -> None:
        """Refuse detail whose digest is not this ref's."""
        found = digest_of(detail)
        if found != self.digest:
            raise DetailMismatch(f"result {self.id} of {self.service} has digest {found}, the ref says "
                                 f"{self.digest}: refused")


def make_ref(detail: Any, *, service: str, kind: str, id: str, org_id: str,
             summary: Mapping[str, Any]) -> ResultRef:
    return ResultRef(service=service, kind=kind, id=id, org_id=org_id, size=len(canonical_json(detail)),
                     digest=digest_of(detail), summary=dict(summary))


def by_reference(ref: ResultRef) -> dict[str, Any]:
    """The result as it travels once stored: the summary's keys and the ref."""
    return {**ref.summary, RESULT_REF_KEY: ref.model_dump(mode="json")}


def ref_of(result: Any) -> ResultRef | None:
    """The ref a result carries, if it is stored; a malformed ref is an error."""
    if not isinstance(result, Mapping) or result.get(RESULT_REF_KEY) is None:
        return None
    try:
        return ResultRef.model_validate(result[RESULT_REF_KEY])
    except ValidationError as exc:
        raise SchemaError(f"{RESULT_REF_KEY} is not a result ref: {exc.errors()[0]['msg']}") from exc


def pricing_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """What a pricing result's events carry once its nights are stored: every field
    but the nights, and how many nights and which listings there are."""
    nights = result.get("recommendations") or []
    listings = sorted({str(n.get("listing_id")) for n in nights if isinstance(n, Mapping)})
    summary = {k: v for k, v in result.items() if k != "recommendations"}
    summary.update(nights=len(nights), listings=len(listings))
    return summary


def apply_price_edits(proposal: Iterable[Any], edits: Any, currency: Any = None) -> list[dict[str, Any]]:
    """The prices to publish from a proposal (its recommendations): each night at its
    recommended price unless an edit `{listing_id, date, price}` changed it; the
    owner's bounds travel with the night, so each later check sees them."""
    overrides = {(c.get("listing_id"), c.get("date")): c.get("price")
                 for c in (edits if isinstance(edits, list) else []) if isinstance(c, Mapping)}
    prices = []
    for item in proposal:
        if not isinstance(item, Mapping):
            continue
        key = (item.get("listing_id"), item.get("date"))
        night = {
            "listing_id": item.get("listing_id"), "date": item.get("date"),
            "price": overrides.get(key, item.get("recommended_price")),
            "currency": item.get("currency") or currency,
            "previous_price": item.get("current_price"),
        }
        night.update({bound: item[bound] for bound in ("min_price", "max_price") if item.get(bound) is not None})
        prices.append(night)
    return prices


def unknown_edits(proposal: Iterable[Any], edits: Any) -> list[str]:
    """Edits naming no night of the proposal, as `listing date`."""
    nights = {(str(n.get("listing_id")), str(n.get("date"))) for n in proposal if isinstance(n, Mapping)}
    return [f"{e.get('listing_id')} {e.get('date')}" for e in (edits if isinstance(edits, list) else [])
            if isinstance(e, Mapping) and (str(e.get("listing_id")), str(e.get("date"))) not in nights]
