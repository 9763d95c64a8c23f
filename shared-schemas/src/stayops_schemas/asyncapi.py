"""The AsyncAPI 3.0 document of StayOps' events, generated from the catalog: the
topics are its channels, the event types its messages (their payloads the
exported JSON Schemas), the CloudEvents binary Kafka binding a message trait, and
its operations say which service sends each message (`ownership`) and which
consumer group receives it (`subscriptions`)."""

from __future__ import annotations

import inspect
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import yaml

from stayops_schemas.catalog import CATALOG, TOPICS, EventType, Topic, dead_letter_topic, replay_topic
from stayops_schemas.envelope import CONTENT_TYPE, SPECVERSION
from stayops_schemas.ownership import OWNERS
from stayops_schemas.subscriptions import CONSUMED_BY

ASYNCAPI_FILE = "asyncapi.yaml"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
CLOUDEVENTS_TRAIT = "cloudEventsKafkaBinary"


def _header(description: str, **schema: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **schema}


# The `ce_*` headers of the CloudEvents Kafka protocol binding, binary content mode
# (stayops_schemas.binding), with the StayOps extension attributes.
CLOUDEVENTS_HEADERS: Mapping[str, dict[str, Any]] = {
    "ce_id": _header("The event's id (a UUID); with ce_source, its identity: consumers apply it once."),
    "ce_source": _header("Who published it, e.g. /task-service; consumers refuse a source that does not "
                         "own the type."),
    "ce_type": _header("The event type, e.g. stayops.task.created: the message's name."),
    "ce_specversion": _header("The CloudEvents version.", const=SPECVERSION),
    "ce_time": _header("When it happened (RFC 3339, UTC).", format="date-time"),
    "ce_dataschema": _header("The `$id` of the payload's JSON Schema, urn:stayops:schema:<type>:v<version>."),
    "ce_subject": _header("What the event is about within the source, where set (e.g. a task or run id)."),
    "ce_orgid": _header("The tenant: the payload's org_id. Every event carries it."),
    "ce_partitionkey": _header("The aggregate id, also the record key: one aggregate's events stay in order."),
    "ce_correlationid": _header("The saga or request the event belongs to (a pricing run's id, for one); "
                                "GET /v1/events?correlation_id= and `stayops trace` follow it."),
    "ce_causationid": _header("The id of the event whose handling announced this one: the causal tree."),
    "ce_traceparent": _header("W3C trace context (CloudEvents distributed-tracing extension) of the span that "
                              "announced the event, stored with it in the outbox; the consumer's handler "
                              "span is its child. Absent when the publisher's tracing is off."),
    "content-type": _header("The record value's media type.", const=CONTENT_TYPE),
}
REQUIRED_HEADERS = ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_orgid",
                    "ce_partitionkey", "content-type")


def service_of(source: str) -> str:
    """The service a CloudEvents source names: `/task-service` is task-service,
    `urn:stayops:org-service` org-service."""
    return source.rsplit(":", 1)[-1].strip("/")


def _summary(entry: EventType) -> str:
    doc = inspect.getdoc(entry.model) or entry.model.__name__
    first = re.sub(r"\s+", " ", doc.split("\n\n", 1)[0]).strip()
    return first


def _message(entry: EventType) -> dict[str, Any]:
    return {
        "name": entry.type,
        "title": f"{entry.type} v{entry.version}",
        "summary": _summary(entry),
        "contentType": CONTENT_TYPE,
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./{entry.schema_file}"}},
        "traits": [{"$ref": f"#/components/messageTraits/{CLOUDEVENTS_TRAIT}"}],
        "bindings": {"kafka": {
            "key": {"type": "string", "description": "The partitionkey (the aggregate id)."},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
        "x-stayops-dataschema": entry.dataschema,
        "x-stayops-publishers": sorted(service_of(source) for source in OWNERS[entry.type]),
        "x-stayops-consumers": sorted(g for g, types in CONSUMED_BY.items() if entry.type in types),
    }


def _channel(topic: Topic, entries: list[EventType]) -> dict[str, Any]:
    return {
        "address": topic.name,
        "title": topic.name,
        "description": f"Kafka topic {topic.name} ({topic.partitions} partitions). A record a consumer group "
                       f"cannot apply is parked on <group>.dlq (e.g. {dead_letter_topic('task-service')}); "
                       f"`stayops replay` re-delivers records to one group only, on <group>.replay "
                       f"(e.g. {replay_topic('task-service')}), which no other group reads.",
        "messages": {entry.type: {"$ref": f"#/components/messages/{entry.type}"} for entry in entries},
        "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions,
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operation(action: str, service: str, topic: str, types: list[str]) -> dict[str, Any]:
    verb = "publishes" if action == "send" else "consumes, as the consumer group " + service + ","
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{topic}"},
        "summary": f"{service} {verb} these events on {topic}.",
        "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in sorted(types)],
    }
    if action == "receive":
        operation["bindings"] = {"kafka": {"groupId": {"type": "string", "enum": [service]},
                                           "bindingVersion": KAFKA_BINDING_VERSION}}
    return operation


def asyncapi_document() -> dict[str, Any]:
    """The document as data; its payload `$ref`s are relative to the exported schemas' directory."""
    by_topic: dict[str, list[EventType]] = defaultdict(list)
    for entry in sorted(CATALOG.values(), key=lambda e: e.type):
        by_topic[entry.topic].append(entry)
    sends: dict[tuple[str, str], list[str]] = defaultdict(list)
    receives: dict[tuple[str, str], list[str]] = defaultdict(list)
    for entry in CATALOG.values():
        for source in OWNERS[entry.type]:
            sends[(service_of(source), entry.topic)].append(entry.type)
    for group, consumed in CONSUMED_BY.items():
        for name in consumed:
            receives[(group, CATALOG[name].topic)].append(name)
    operations: dict[str, Any] = {}
    for action, table in (("send", sends), ("receive", receives)):
        for (service, topic), types in sorted(table.items()):
            operations[f"{service}.{action}.{topic}"] = _operation(action, service, topic, types)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "StayOps events",
            "version": "1",
            "description": (
                "Every event StayOps services publish and consume on Kafka, as CloudEvents 1.0 in binary "
                "content mode: the attributes in ce_* headers, the data (JSON) as the record value, the "
                "partitionkey as the record key. Generated from stayops_schemas (catalog, ownership, "
                "subscriptions) by `stayops schemas export shared-schemas/schemas`; do not edit by hand."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": {topic.name: _channel(topic, by_topic[topic.name]) for topic in TOPICS if by_topic[topic.name]},
        "operations": operations,
        "components": {
            "messages": {entry.type: _message(entry) for entry in sorted(CATALOG.values(), key=lambda e: e.type)},
            "messageTraits": {CLOUDEVENTS_TRAIT: {
                "summary": "CloudEvents 1.0, Kafka protocol binding, binary content mode.",
                "headers": {
                    "type": "object",
                    "required": list(REQUIRED_HEADERS),
                    "properties": dict(CLOUDEVENTS_HEADERS),
                },
            }},
        },
    }


def render_asyncapi(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=120)
