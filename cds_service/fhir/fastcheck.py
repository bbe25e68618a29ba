"""A fast, conservative proof that an R4 resource is valid, in front of the fhir.resources models.

Validating every prefetched resource with the ``fhir.resources.R4B`` models (pydantic v1, pure
Python) costs about 0.3 ms a resource: 60 ms of a 70 ms hook call for a realistic record of 218
resources (issue 6, BENCHMARKS.md). ``proves_valid`` walks the JSON with checks compiled once per
model class *from the models themselves* (their fields, aliases, cardinality, required and
choice-type groups, and the primitive types' own validators) and answers:

- ``True``: the R4B model accepts this resource (it is proven valid, so the model is skipped);
- ``False``: not proven, which is not a rejection: ``fhir.parse.validate`` asks the model, which
  decides and names the fields at fault.

Soundness is the one property that matters ("True" only where the model would accept), so
anything this module does not reproduce exactly is "not proven": a key the model does not know,
``null``, an empty array, a primitive given another JSON type, a primitive extension (``_x``), a
contained resource, ``fhir_comments``, a primitive type without an exact check (url, uuid,
base64Binary, ...), or a model with a validator this module does not know. Real records are
made of plain elements, so they take the fast path; anything odd still meets the model.
``tests/production/test_fast_validation.py`` checks soundness on every scenario resource and on
thousands of seeded mutations of them.
"""

from __future__ import annotations

import math
import re
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from pydantic.v1.fields import SHAPE_LIST, SHAPE_SINGLETON
from pydantic.v1.types import ConstrainedDecimal, ConstrainedInt, ConstrainedStr

Check = Callable[[Any], bool]

# The two root validators every R4B model class is generated with; their logic is reproduced by
# _Spec.required (validate_required_primitive_elements) and _Spec.choices (validate_one_of_many).
_KNOWN_ROOT_VALIDATORS = re.compile(
    r"^(validate_required_primitive_elements|validate_one_of_many)_\d+$"
)


def _never(_value: Any) -> bool:
    return False


@dataclass(frozen=True)
class _Field:
    check: Check  # one value (an item, for a list)
    is_list: bool


@dataclass
class _Spec:
    """The compiled checks of one model class (resource or element type)."""

    fields: dict[str, _Field]
    required: tuple[str, ...]  # JSON keys that must be present with a value
    choices: tuple[tuple[frozenset[str], bool], ...]  # (keys of a value[x] group, required)
    resource_type: str | None  # for resources: the resourceType the model expects
    provable: bool = True


_specs: dict[type, _Spec] = {}
_compiling = threading.RLock()


def proves_valid(resource: Any) -> bool:
    """True only when the R4B model of ``resource``'s resourceType would accept it."""
    if type(resource) is not dict:
        return False
    resource_type = resource.get("resourceType")
    if type(resource_type) is not str:
        return False
    try:
        model = get_fhir_model_class(resource_type)
    except KeyError:
        return False
    spec = _spec(model)
    if spec.resource_type != resource_type:
        return False
    return _check_object(spec, resource, top_level=True)


def _check_object(spec: _Spec, value: Any, top_level: bool = False) -> bool:
    if type(value) is not dict or not spec.provable:
        return False
    fields = spec.fields
    for key, item in value.items():
        if key == "resourceType" and top_level:
            continue  # compared with the model's resource type by the caller
        field = fields.get(key)
        if field is None:
            return False  # unknown to the model (it forbids extras), or not reproduced here
        if field.is_list:
            if type(item) is not list or not item:
                return False
            check = field.check
            for element in item:
                if not check(element):
                    return False
        elif not field.check(item):
            return False
    for key in spec.required:
        if value.get(key) is None:
            return False
    if spec.choices:
        keys = value.keys()
        for group, required in spec.choices:
            # Every key here passed its check, so none is null: present means given.
            present = len(keys & group)
            if present > 1 or (required and present == 0):
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Compiling a model class


def _spec(model: type) -> _Spec:
    spec = _specs.get(model)
    if spec is not None:
        return spec
    with _compiling:
        spec = _specs.get(model)
        if spec is None:
            # Published only once complete: a reader never sees a half-compiled spec. Element
            # types are compiled when first met while checking, so compiling does not recurse.
            spec = _compile(model)
            _specs[model] = spec
        return spec


def _compile(model: type) -> _Spec:
    spec = _Spec(fields={}, required=(), choices=(), resource_type=None)
    pre = [v.__name__ for v in getattr(model, "__pre_root_validators__", ())]
    post = [v.__name__ for _, v in getattr(model, "__post_root_validators__", ())]
    config = model.__config__  # type: ignore[attr-defined]
    if (
        any(not _KNOWN_ROOT_VALIDATORS.match(name) for name in pre)
        or post
        or getattr(model, "__validators__", None)
        or getattr(config, "anystr_strip_whitespace", False)
        or getattr(config, "anystr_lower", False)
        or getattr(config, "anystr_upper", False)
    ):
        spec.provable = False
        return spec
    required: list[str] = []
    groups: dict[str, tuple[list[str], bool]] = {}
    for name, model_field in model.__fields__.items():  # type: ignore[attr-defined]
        if name == "resource_type":
            spec.resource_type = model_field.default
            continue
        if name == "fhir_comments":
            continue  # not reproduced: its key stays unknown, so "not proven"
        extra = model_field.field_info.extra
        alias = model_field.alias
        if model_field.required or extra.get("element_required"):
            required.append(alias)
        choice = extra.get("one_of_many")
        if choice:
            keys, _ = groups.get(choice, ([], False))
            keys.append(alias)
            groups[choice] = (keys, bool(extra.get("one_of_many_required")))
        if model_field.shape not in (SHAPE_SINGLETON, SHAPE_LIST):
            continue  # unknown shape: the key stays unknown
        check = _type_check(model_field.type_, config)
        if check is _never:
            continue
        spec.fields[alias] = _Field(check, model_field.shape == SHAPE_LIST)
    spec.required = tuple(required)
    spec.choices = tuple((frozenset(keys), needed) for keys, needed in groups.values())
    return spec


def _type_check(type_: Any, config: Any) -> Check:
    # List[Optional[X]] (HumanName.given): the items are X, and a null item stays "not proven".
    if typing.get_origin(type_) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(type_) if m is not type(None)]
        if len(members) != 1:
            return _never
        type_ = members[0]
    if type_ is bool:  # the generated models type FHIR boolean as bool: pydantic's bool_validator
        return lambda value: type(value) is bool
    if isinstance(type_, type) and issubclass(type_, fhirtypes.Primitive):
        return _primitive_check(type_, config)
    element = getattr(type_, "__resource_type__", None)
    if not isinstance(element, str) or element in ("Resource", "DomainResource"):
        return _never  # contained resources and anything unexpected: not proven
    try:
        model = get_fhir_model_class(element)
    except KeyError:
        return _never
    validators = list(type_.__get_validators__())
    if len(validators) != 1:
        return _never

    compiled: list[_Spec] = []  # filled on first use: element types refer to themselves

    def check(value: Any) -> bool:
        # A nested element carrying "resourceType" is handled specially by the model: not proven.
        if type(value) is not dict or "resourceType" in value:
            return False
        if not compiled:
            compiled.append(_spec(model))
        return _check_object(compiled[0], value)

    return check


def _standard_validators(type_: Any, base: Any) -> bool:
    """The type validates with ``base``'s pydantic validator chain, not one of its own."""
    own = getattr(type_.__get_validators__, "__func__", None)
    return own is getattr(base.__get_validators__, "__func__", object())


def _function(method: Any) -> Any:
    return getattr(method, "__func__", None)


# ---------------------------------------------------------------------------------------------
# Primitives: exactly what the pydantic v1 validators of each fhirtypes class accept, for the
# JSON type FHIR prescribes; any other JSON type is "not proven".


def _primitive_check(type_: type, config: Any) -> Check:
    if issubclass(type_, ConstrainedStr) and _standard_validators(type_, ConstrainedStr):
        return _string_check(type_, config)
    if issubclass(type_, ConstrainedInt) and _standard_validators(type_, ConstrainedInt):
        return _integer_check(type_)
    if issubclass(type_, ConstrainedDecimal) and _standard_validators(type_, ConstrainedDecimal):
        return _decimal_check(type_)
    if type_ in (fhirtypes.Date, fhirtypes.DateTime, fhirtypes.Instant, fhirtypes.Time):
        return _temporal_check(type_)
    return _never  # url, uuid, base64Binary, ...: left to the model


def _string_check(type_: Any, config: Any) -> Check:
    if (
        type_.strict
        or type_.strip_whitespace
        or type_.to_upper
        or getattr(type_, "to_lower", False)
        or type_.curtail_length
    ):
        return _never
    low = type_.min_length if type_.min_length is not None else config.min_anystr_length
    high = type_.max_length if type_.max_length is not None else config.max_anystr_length
    validate_function = _function(type_.validate)
    string_validate = _function(fhirtypes.String.validate)
    regex = type_.regex
    if validate_function is _function(ConstrainedStr.validate) or (
        validate_function is string_validate
    ):
        # ConstrainedStr.validate is re.match(cls.regex, value); String.validate first lets ""
        # through when String.configure_empty_str(True) was called (read at each check).
        if regex is not None and not isinstance(regex, re.Pattern):
            return _never
        empty_allowed = validate_function is string_validate

        def check(value: Any) -> bool:
            if type(value) is not str:
                return False
            if len(value) < low or (high is not None and len(value) > high):
                return False
            if empty_allowed and value == "" and type_.allow_empty_str is True:
                return True
            return regex is None or regex.match(value) is not None

        return check
    validate = type_.validate  # a type with its own validate: call it

    def check_with_validate(value: Any) -> bool:
        if type(value) is not str:
            return False
        if len(value) < low or (high is not None and len(value) > high):
            return False
        try:
            validate(value)
        except Exception:
            return False
        return True

    return check_with_validate


def _integer_check(type_: Any) -> Check:
    if type_.strict or type_.multiple_of is not None:
        return _never
    gt, ge, lt, le = type_.gt, type_.ge, type_.lt, type_.le

    def check(value: Any) -> bool:
        return (
            type(value) is int
            and (gt is None or value > gt)
            and (ge is None or value >= ge)
            and (lt is None or value < lt)
            and (le is None or value <= le)
        )

    return check


def _decimal_check(type_: Any) -> Check:
    constraints = (type_.gt, type_.ge, type_.lt, type_.le, type_.multiple_of, type_.max_digits,
                   type_.decimal_places)
    if any(c is not None for c in constraints):
        return _never

    def check(value: Any) -> bool:
        kind = type(value)
        return kind is int or (kind is float and math.isfinite(value))

    return check


def _temporal_check(type_: Any) -> Check:
    validators = list(type_.__get_validators__())
    if len(validators) != 1:
        return _never
    validate = validators[0]

    def check(value: Any) -> bool:
        if type(value) is not str:
            return False
        try:
            validate(value)
        except Exception:
            return False
        return True

    return check
