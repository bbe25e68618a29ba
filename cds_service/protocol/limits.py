"""How much FHIR content one call may carry: ``settings.max_resources`` resources in total.

The body size and nesting depth are bounded while reading (``protocol.body``); this bounds the
work after it: every FHIR resource in ``prefetch`` and in the context (the drafted orders, in the
field the hook declares: ``context.draftOrders`` on the order hooks) is read and
checked for flaws (drafts also against the R4 model), so their number, not their bytes, is what
costs time. Counted on the raw JSON before
schema validation, so an oversized call is refused (413) before any per-resource work.
"""

from __future__ import annotations

from typing import Any

from cds_service.errors import PayloadTooLarge


def count_resources(value: Any) -> int:
    """FHIR resources in a prefetch value: the resource, or for a Bundle (a container, not
    counted itself) every entry resource, recursively since a Bundle may hold Bundles."""
    if not isinstance(value, dict) or "resourceType" not in value:
        return 0
    if value["resourceType"] != "Bundle":
        return 1
    total = 0
    bundles = [value]
    while bundles:
        entries = bundles.pop().get("entry")
        if not isinstance(entries, list):
            continue
        # Each entry's resource read here, not pushed and popped: a Bundle may hold thousands.
        for entry in entries:
            if isinstance(entry, dict):
                resource = entry.get("resource")
                if isinstance(resource, dict) and "resourceType" in resource:
                    if resource["resourceType"] != "Bundle":
                        total += 1
                    else:
                        bundles.append(resource)
    return total


def resources_in_call(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    total = 0
    prefetch = body.get("prefetch")
    if isinstance(prefetch, dict):
        total += sum(count_resources(value) for value in prefetch.values())
    context = body.get("context")
    if isinstance(context, dict):
        # Whichever field a hook keeps its drafts in (cds_service.hooks): every resource counts.
        total += sum(count_resources(value) for value in context.values())
    return total


def check_resource_count(body: Any, max_resources: int) -> None:
    """Raise ``PayloadTooLarge`` (413) when the call carries more than ``max_resources``."""
    count = resources_in_call(body)
    if count > max_resources:
        raise PayloadTooLarge(
            f"the call carries {count} FHIR resources in prefetch and the context; the limit is "
            f"{max_resources} (MYOCDS_MAX_RESOURCES)",
            expression="prefetch",
        )
