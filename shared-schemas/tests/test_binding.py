"""The CloudEvents binary-mode binding: what goes on the wire and what is refused."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stayops_schemas import CONTENT_TYPE, Envelope, MalformedEvent, from_kafka, to_kafka


def envelope(**changes: object) -> Envelope:
    fields: dict[str, object] = {
        "id": "evt-1",
        "type": "stayops.task.created",
        "source": "/task-service",
        "orgid": "org-1",
        "partitionkey": "task-1",
        "data": {"task_id": "task-1", "nested": {"n": [1, 2.5, None, "x"]}},
        "time": datetime(2025, 6, 1, 9, 0, 0, 123456, tzinfo=UTC),
        "correlationid": "run-1",
        "causationid": "evt-0",
        "dataschema": "urn:stayops:schema:stayops.task.created:v1",
        "subject": "task-1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    fields.update(changes)
    return Envelope(**fields)


def test_an_envelope_survives_the_round_trip_through_kafka() -> None:
    original = envelope()
    record = to_kafka(original)
    assert from_kafka(record.key, record.value, record.headers) == original


def test_an_envelope_with_only_the_required_attributes_survives_the_round_trip() -> None:
    original = envelope(correlationid=None, causationid=None, dataschema=None, subject=None, traceparent=None)
    record = to_kafka(original)
    assert from_kafka(record.key, record.value, record.headers) == original


def test_a_time_in_another_zone_arrives_as_the_same_instant_in_utc() -> None:
    local = datetime(2025, 6, 1, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    record = to_kafka(envelope(time=local))
    decoded = from_kafka(record.key, record.value, record.headers)
    assert decoded.time == local
    assert decoded.time.utcoffset() == timedelta(0)


def test_attributes_travel_in_ce_headers_and_the_data_is_json() -> None:
    record = to_kafka(envelope())
    headers = dict(record.headers)
    assert len(headers) == len(record.headers), "a header is repeated"
    assert headers["content-type"] == CONTENT_TYPE.encode() == b"application/json"
    assert all(name.startswith("ce_") for name in headers if name != "content-type")
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_orgid"] == b"org-1"
    assert headers["ce_correlationid"] == b"run-1"
    assert "ce_datacontenttype" not in headers, "binary mode carries it as content-type"


def test_the_record_key_is_the_partition_key() -> None:
    record = to_kafka(envelope(partitionkey="listing-42"))
    assert record.key == b"listing-42"
    assert dict(record.headers)["ce_partitionkey"] == b"listing-42"


def headers_without(record_headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(key, value) for key, value in record_headers if key != name]


def test_a_record_without_ce_specversion_is_malformed() -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent, match="ce_specversion"):
        from_kafka(record.key, record.value, headers_without(record.headers, "ce_specversion"))


def test_a_record_whose_value_is_not_json_is_malformed() -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent):
        from_kafka(record.key, b"{not json", record.headers)


def test_a_record_whose_value_is_a_json_array_is_malformed() -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent, match="JSON object"):
        from_kafka(record.key, b'[{"task_id": "task-1"}]', record.headers)


def test_a_record_without_orgid_is_malformed() -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent, match="orgid"):
        from_kafka(record.key, record.value, headers_without(record.headers, "ce_orgid"))


def test_a_record_without_a_required_cloudevents_attribute_is_malformed() -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent):
        from_kafka(record.key, record.value, headers_without(record.headers, "ce_type"))


def test_a_record_is_what_the_cloudevents_sdk_reads_and_writes() -> None:
    """The binding is written out for speed; the SDK's Kafka binding is the reference."""
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    original = envelope(time=datetime(2025, 6, 1, 11, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))))
    record = to_kafka(original)
    event = ce_kafka.from_binary(ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key,
                                                       value=record.value), JSONFormat(), CloudEvent)
    assert event.get_attributes() == {
        "id": "evt-1", "type": "stayops.task.created", "source": "/task-service", "specversion": "1.0",
        "time": original.time, "datacontenttype": "application/json", "orgid": "org-1",
        "partitionkey": "task-1", "correlationid": "run-1", "causationid": "evt-0",
        "traceparent": original.traceparent, "dataschema": original.dataschema, "subject": "task-1",
    }
    assert event.get_data() == original.data

    attributes = {key: value for key, value in event.get_attributes().items()}
    message = ce_kafka.to_binary(CloudEvent(attributes, original.data), JSONFormat())
    key = message.key.encode() if isinstance(message.key, str) else message.key
    assert from_kafka(key, message.value, list(message.headers.items())) == original


def test_relay_bytes_go_out_as_they_are() -> None:
    record = to_kafka(envelope(), value=b'{"task_id": "task-1"}')
    assert record.value == b'{"task_id": "task-1"}'
    assert record.headers == to_kafka(envelope()).headers


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("ce_time", b"yesterday", "RFC 3339"),
        ("ce_time", b"2025-06-01T09:00:00", "no offset"),
        ("ce_time", b"0001-01-01T00:00:00+01:00", "out of range"),
        ("ce_specversion", b"0.3", "specversion"),
        ("ce_id", b"", "'id'"),
        ("ce_source", b"\xff", "UTF-8"),
        ("content-type", b"text/plain", "must be JSON"),
    ],
)
def test_a_record_with_a_bad_attribute_is_malformed(name: str, value: bytes, reason: str) -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent, match=reason):
        from_kafka(record.key, record.value, [*headers_without(record.headers, name), (name, value)])


def test_a_record_without_an_id_is_malformed_rather_than_given_one() -> None:
    record = to_kafka(envelope())
    with pytest.raises(MalformedEvent, match="'id'"):
        from_kafka(record.key, record.value, headers_without(record.headers, "ce_id"))
