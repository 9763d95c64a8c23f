"""Errors raised when an event cannot be read or does not match its schema.

    SchemaError
     ├── MalformedEvent   the record is not a decodable StayOps CloudEvent
     ├── UnknownEventType the type is not in the catalog
     └── InvalidPayload   the data does not match the type's payload model
"""


class SchemaError(Exception):
    """An event that no retry can fix: it belongs on the dead-letter topic."""


class MalformedEvent(SchemaError):
    """The Kafka record is not a binary-mode CloudEvent with the StayOps extensions."""


class UnknownEventType(SchemaError):
    """The event type is not in the catalog; add it to `stayops_schemas.catalog`."""


class InvalidPayload(SchemaError):
    """The event data does not validate against its payload model."""
