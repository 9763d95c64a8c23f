"""Base class of every event payload and the field types payloads share."""

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema


class Payload(BaseModel):
    """An event's data. Unknown fields are kept out so a typo fails validation;
    adding an optional field is compatible, anything else is a new type version."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Money is exact: a `Decimal` that travels as a JSON string ("129.00") and always
# next to an ISO 4217 `currency`, never a float.
Amount = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$",
            "description": "A non-negative amount in the accompanying currency, as a "
            "decimal string with at most two decimals.",
            "examples": ["129.00"],
        }
    ),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR", "USD"])]
NonEmptyStr = Annotated[str, Field(min_length=1)]
