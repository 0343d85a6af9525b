import pytest
from pydantic import ValidationError

from raydc.server.validation import validation_details
from raydc.specs.jobs import Priority, parse_job_spec
from tests.unit.factories import train_spec


def locs(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in item["loc"][1:]) for item in validation_details(error)]


def test_a_minimal_spec_gets_defaults() -> None:
    spec = parse_job_spec({"kind": "train", "name": "a", "code": {"app": "x"}, "entrypoint": "m:f"})
    assert spec.resources.min_workers == spec.resources.max_workers == 1
    assert spec.priority is Priority.NORMAL
    assert spec.max_retries == 2
    assert not spec.resources.is_elastic


def test_an_elastic_range_is_elastic() -> None:
    spec = parse_job_spec(train_spec(resources={"workers": {"min": 1, "max": 3}}))
    assert (spec.resources.min_workers, spec.resources.max_workers) == (1, 3)
    assert spec.resources.is_elastic


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epochz": 3}, "epochz"),
        ({"resources": {"workers": {"min": 3, "max": 2}}}, "resources.workers"),
        ({"resources": {"workers": 0}}, "resources.workers"),
        ({"resources": {"cpus_per_worker": -1}}, "resources.cpus_per_worker"),
        ({"resources": {"gpus_per_worker": -0.5}}, "resources.gpus_per_worker"),
        ({"resources": {"custom": {"TPU": -1}}}, "resources.custom"),
        ({"resources": {"wokers": 2}}, "resources.wokers"),
        ({"entrypoint": "no-colon"}, "entrypoint"),
        ({"code": {"app": "a", "ref": "sha256:" + "0" * 64}}, "code"),
        ({"code": {"ref": "md5:abc"}}, "code.ref"),
        ({"priority": "urgent"}, "priority"),
        ({"name": "Bad_Name"}, "name"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_bad_fields_are_named(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_job_spec(train_spec(**change))
    assert field in locs(caught.value)


def test_min_greater_than_max_says_why() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_job_spec(train_spec(resources={"workers": {"min": 3, "max": 2}}))
    details = validation_details(caught.value)
    assert len(details) == 1
    assert "min (3) must not exceed max (2)" in details[0]["msg"]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_job_spec(train_spec(kind="bake"))
    assert "bake" in str(caught.value)


def test_priorities_rank_in_order() -> None:
    ranks = [p.rank for p in (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL)]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4
