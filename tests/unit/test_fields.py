"""Field selection parsing and validation (spec §1.4, §3.1)."""

from __future__ import annotations

import pytest

from wayview.errors import InvalidParameter, UnknownField
from wayview.model.fields import parse_fields, validate


@pytest.mark.parametrize(
    "text,tree",
    [
        ("", {}),
        ("id,", {"id": None}),
        (" id , make ", {"id": None, "make": None}),
        ("creator{id,username}", {"creator": {"id": None, "username": None}}),
        ("creator.username,creator{id}", {"creator": {"username": None, "id": None}}),
        (
            "detections{value,image{id,geometry}}",
            {"detections": {"value": None, "image": {"id": None, "geometry": None}}},
        ),
        ("detections.image.id", {"detections": {"image": {"id": None}}}),
        ("creator,creator{username}", {"creator": {"username": None}}),
    ],
)
def test_fields_parse_forms(text, tree):
    assert parse_fields(text) == tree


@pytest.mark.parametrize("text", ["creator{id", "creator}id{", "a{b}c", "creator.", ".id"])
def test_fields_malformed_is_e9(text):
    with pytest.raises(InvalidParameter):
        parse_fields(text)


def test_fields_validate_reports_first_unknown_with_nested_type():
    with pytest.raises(UnknownField) as err:
        validate(parse_fields("id,detections{value,nope}"), "Image")
    assert (err.value.field, err.value.node_type) == ("nope", "Detection")
    with pytest.raises(UnknownField) as err:
        validate(parse_fields("make.sub"), "Image")
    assert err.value.node_type == "Image"
