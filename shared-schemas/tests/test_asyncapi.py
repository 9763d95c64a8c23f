"""The committed AsyncAPI document (`schemas/asyncapi.yaml`, checked for drift with
the JSON Schemas) is a well-formed AsyncAPI 3.0 document that says what the code
does: every catalog type is a message whose payload is its committed JSON Schema,
every owner sends it, every declared consumer group receives it, and a record the
binding writes carries the headers the CloudEvents trait describes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from stayops_schemas import CATALOG, TOPICS, Envelope, to_kafka
from stayops_schemas.asyncapi import ASYNCAPI_FILE, asyncapi_document, service_of
from stayops_schemas.ownership import OWNERS
from stayops_schemas.subscriptions import CONSUMED_BY

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS / ASYNCAPI_FILE).read_text(encoding="utf-8"))
    return loaded


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} points at nothing ({part!r} missing)"
        node = node[part]
    return node


def test_the_committed_document_is_the_generated_one(document: dict[str, Any]) -> None:
    assert document == asyncapi_document()


def test_it_is_an_asyncapi_3_document_whose_references_all_resolve(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert set(document["channels"]) == {topic.name for topic in TOPICS}
    for name, channel in document["channels"].items():
        assert channel["address"] == name
        assert channel["messages"], f"channel {name} carries no message"
        for key, message_ref in channel["messages"].items():
            message = resolve(document, message_ref["$ref"])
            assert message["name"] == key
            assert CATALOG[key].topic == name
    for operation_id, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), operation_id
        channel_ref = operation["channel"]["$ref"]
        channel = resolve(document, channel_ref)
        assert operation["messages"], f"{operation_id} names no message"
        for message_ref in operation["messages"]:
            # AsyncAPI 3: an operation's messages are its channel's.
            assert message_ref["$ref"].startswith(channel_ref + "/messages/"), (operation_id, message_ref)
            resolve(document, message_ref["$ref"])
        assert channel["address"] in operation_id
    for message in document["components"]["messages"].values():
        for trait in message["traits"]:
            assert resolve(document, trait["$ref"])["headers"]["type"] == "object"


def test_every_event_type_is_a_message_with_its_committed_json_schema(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    assert set(messages) == set(CATALOG)
    for type_, entry in CATALOG.items():
        payload = messages[type_]["payload"]
        assert payload["schemaFormat"].startswith("application/schema+json")
        schema_file = SCHEMAS / payload["schema"]["$ref"]
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        assert schema["$id"] == entry.dataschema == messages[type_]["x-stayops-dataschema"]


def _operation_types(document: dict[str, Any], action: str) -> dict[str, set[str]]:
    """Who (the operation id's first part) sends or receives which message types."""
    found: dict[str, set[str]] = {}
    for operation_id, operation in document["operations"].items():
        if operation["action"] == action:
            who = operation_id.split(f".{action}.", 1)[0]
            found.setdefault(who, set()).update(ref["$ref"].rsplit("/", 1)[1] for ref in operation["messages"])
    return found


def test_operations_say_who_publishes_and_who_consumes_each_event(document: dict[str, Any]) -> None:
    sent = _operation_types(document, "send")
    for type_, sources in OWNERS.items():
        for source in sources:
            assert type_ in sent[service_of(source)], f"{source} publishes {type_}"
    assert sum(len(types) for types in sent.values()) == sum(len(s) for s in OWNERS.values())

    received = _operation_types(document, "receive")
    assert received == {group: set(types) for group, types in CONSUMED_BY.items()}
    assert "stayops.task.requested" in received["task-service"]
    assert "airbnb.price.updated" in received["agent-service"]


def test_a_record_the_binding_writes_carries_the_headers_the_trait_describes(document: dict[str, Any]) -> None:
    trait = document["components"]["messageTraits"]["cloudEventsKafkaBinary"]["headers"]
    record = to_kafka(Envelope(
        id="7d0f6c1e-3c51-4a53-9a8e-0d5c1f3c2b10", type="stayops.task.created", source="/task-service",
        orgid="org-1", partitionkey="task-1", data={"org_id": "org-1"}, correlationid="run-1",
        causationid="e-0", dataschema=CATALOG["stayops.task.created"].dataschema, subject="task-1",
    ))
    headers = {name: value.decode() for name, value in record.headers}
    assert not list(Draft202012Validator(trait).iter_errors(headers))
    assert set(headers) <= set(trait["properties"]), "every header the binding writes is described"

    del headers["ce_orgid"]
    assert list(Draft202012Validator(trait).iter_errors(headers)), "orgid is required"
