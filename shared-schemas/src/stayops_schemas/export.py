"""Writes the catalog's JSON Schemas, one file per event type and version, an
`index.json` and the AsyncAPI document over them (`asyncapi.yaml`); the committed
copy lives in `shared-schemas/schemas/`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stayops_schemas.asyncapi import ASYNCAPI_FILE, asyncapi_document, render_asyncapi
from stayops_schemas.catalog import CATALOG, EventType

INDEX_FILE = "index.json"


def event_schema(entry: EventType) -> dict[str, Any]:
    """The JSON Schema of one catalog entry, identified by its `dataschema` URN."""
    schema = entry.model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = entry.dataschema
    schema["title"] = f"{entry.type} v{entry.version} ({entry.model.__name__})"
    return schema


def schema_index(catalog: Mapping[str, EventType]) -> dict[str, Any]:
    """Every event type with its topic, version, `dataschema` and schema file."""
    return {
        "events": {
            entry.type: {
                "dataschema": entry.dataschema,
                "file": entry.schema_file,
                "model": entry.model.__name__,
                "topic": entry.topic,
                "version": entry.version,
            }
            for entry in catalog.values()
        }
    }


def _render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    """Write one `<type>.v<version>.json` per catalog entry, `index.json` and
    `asyncapi.yaml` into `directory`, and remove schema files a previous export listed that the catalog no
    longer has. The output depends only on the catalog, so it can be committed and
    checked for drift. Returns the written files, sorted."""
    directory.mkdir(parents=True, exist_ok=True)
    index_path = directory / INDEX_FILE
    documents = {entry.schema_file: event_schema(entry) for entry in CATALOG.values()}
    documents[INDEX_FILE] = schema_index(CATALOG)
    for stale in sorted(_previously_exported(index_path) - documents.keys()):
        (directory / stale).unlink(missing_ok=True)
    rendered = {name: _render(document) for name, document in documents.items()}
    rendered[ASYNCAPI_FILE] = render_asyncapi(asyncapi_document())
    written = []
    for name, text in sorted(rendered.items()):
        path = directory / name
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written


def _previously_exported(index_path: Path) -> set[str]:
    if not index_path.exists():
        return set()
    events = json.loads(index_path.read_text(encoding="utf-8")).get("events", {})
    return {str(event["file"]) for event in events.values() if "file" in event}
