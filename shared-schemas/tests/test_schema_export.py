"""The committed JSON Schemas in `shared-schemas/schemas/` are exactly what the
catalog exports, so a payload change cannot ship without its schema."""

import json
from pathlib import Path

from stayops_schemas import CATALOG, export_schemas

COMMITTED = Path(__file__).resolve().parents[1] / "schemas"
FIX = "run `stayops schemas export shared-schemas/schemas` and commit the result"


def test_the_committed_schemas_match_the_catalog(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    fresh = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    committed = {path.name: path.read_bytes() for path in COMMITTED.glob("*")}

    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    changed = sorted(name for name in fresh.keys() & committed.keys() if fresh[name] != committed[name])
    assert not (missing or extra or changed), (
        f"shared-schemas/schemas is out of date (missing {missing}, extra {extra}, changed {changed}): {FIX}"
    )


def test_the_export_is_one_schema_per_event_type_an_index_and_the_asyncapi_document(tmp_path: Path) -> None:
    written = export_schemas(tmp_path)

    assert sorted(path.name for path in written) == sorted(
        [entry.schema_file for entry in CATALOG.values()] + ["index.json", "asyncapi.yaml"]
    )
    index = json.loads((tmp_path / "index.json").read_text())["events"]
    for entry in CATALOG.values():
        schema = json.loads((tmp_path / entry.schema_file).read_text())
        assert schema["$id"] == entry.dataschema
        assert entry.type in schema["title"]
        assert index[entry.type]["topic"] == entry.topic
        assert index[entry.type]["file"] == entry.schema_file


def test_the_export_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    export_schemas(first)
    export_schemas(second)
    for path in first.iterdir():
        text = path.read_text()
        assert text.endswith("}\n" if path.suffix == ".json" else "\n") and not text.endswith("\n\n")
        assert (second / path.name).read_text() == text


def test_the_export_removes_schemas_the_catalog_no_longer_has(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    index_path = tmp_path / "index.json"
    index = json.loads(index_path.read_text())
    index["events"]["stayops.task.retired"] = {"file": "stayops.task.retired.v1.json"}
    index_path.write_text(json.dumps(index))
    (tmp_path / "stayops.task.retired.v1.json").write_text("{}\n")
    (tmp_path / "README.md").write_text("not ours\n")

    export_schemas(tmp_path)

    assert not (tmp_path / "stayops.task.retired.v1.json").exists()
    assert (tmp_path / "README.md").exists()
