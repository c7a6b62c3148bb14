"""Pydantic shapes filled from the dataclasses that carry the same fields.

A stored row, a backend's info or a labeler mention becomes an API or result model by
copying its same-named attributes; naming the fields once (in the model) keeps the two
from drifting apart when a field is added.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def from_attributes(model: type[M], source: object, **extra: Any) -> M:
    """`model` built from `source`'s attributes named like its fields, plus `extra`.

    A field `source` lacks takes the model's default (a required one fails validation).
    """
    data = {
        name: getattr(source, name)
        for name in model.model_fields
        if name not in extra and hasattr(source, name)
    }
    return model.model_validate({**data, **extra})
