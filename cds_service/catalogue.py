"""What one application answers: its hooks, its rules and its services, checked together.

``Catalogue.shipped()`` is this service's (``hooks.HOOKS``, ``advice.RULES``,
``services.SERVICES``); ``create_app`` takes another (a test adding a hook declares its hook, rule,
service and template, and nothing else). ``check`` runs at start-up against the card templates:
any mismatch stops the service with a message naming the rule, the service or the hook, instead of
a card that fails at render or a rule silently never asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cds_service.advice import RULES
from cds_service.advice.registry import RuleBook
from cds_service.cards_render.templates import Templates
from cds_service.errors import ConfigurationError
from cds_service.hooks import HOOKS, Hooks
from cds_service.services import SERVICES, ServiceDeclaration

__all__ = ["Catalogue"]


@dataclass(frozen=True)
class Catalogue:
    hooks: Hooks
    rules: RuleBook
    services: tuple[ServiceDeclaration, ...]

    @classmethod
    def shipped(cls) -> Catalogue:
        return cls(HOOKS, RULES, SERVICES)

    # --- services -----------------------------------------------------------------------------

    def find_service(self, service_id: str, hook: str) -> ServiceDeclaration | None:
        for service in self.services:
            if service.id == service_id and service.hook == hook:
                return service
        return None

    def services_for_hook(self, hook: str) -> tuple[ServiceDeclaration, ...]:
        return tuple(s for s in self.services if s.hook == hook)

    def service_ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.services)

    def rules_of(self, service: ServiceDeclaration) -> tuple[str, ...]:
        """The rules ``service`` asks on its hook (those of its list that answer the hook)."""
        return self.rules.answering(service.hook, service.rules)

    def services_running(self, rule_id: str) -> tuple[ServiceDeclaration, ...]:
        return tuple(s for s in self.services if rule_id in self.rules_of(s))

    # --- start-up check -----------------------------------------------------------------------

    def problems(self, templates: Templates) -> list[str]:
        """Every disagreement between the declarations and the card templates."""
        found: list[str] = []
        for service in self.services:
            hook = self.hooks.get(service.hook)
            if hook is None:
                found.append(
                    f"service {service.id}: hook {service.hook} is not declared (hooks.py)"
                )
                continue
            for key, query in service.prefetch.items():
                if not hook.fills(query):
                    found.append(
                        f"service {service.id}: prefetch {key} uses a context field "
                        f"{service.hook} does not carry"
                    )
            for rule_id in service.rules:
                if rule_id not in self.rules:
                    found.append(
                        f"service {service.id}: rule {rule_id} is not declared (no @rule)"
                    )
        for rule in self.rules:
            for hook_name in sorted(rule.hooks):
                if hook_name not in self.hooks:
                    found.append(f"rule {rule.id}: hook {hook_name} is not declared (hooks.py)")
                elif not any(
                    rule.id in s.rules for s in self.services if s.hook == hook_name
                ):
                    found.append(
                        f"rule {rule.id} answers {hook_name} but no {hook_name} service runs it "
                        "(add it to a service in services.py)"
                    )
            template = templates.cards.get(rule.id)
            if template is None:
                found.append(f"rule {rule.id}: no card template (cards/{rule.id}.json)")
            elif set(template.hooks) != rule.hooks:
                found.append(
                    f"rule {rule.id}: its card template's hooks ({', '.join(template.hooks)}) "
                    f"differ from its @rule declaration ({', '.join(sorted(rule.hooks))})"
                )
        for rule_id in sorted(set(templates.cards) - set(self.rules.ids())):
            found.append(f"card template {rule_id}.json: no rule {rule_id} is declared (@rule)")
        return found

    def check(self, templates: Templates) -> None:
        """Raise ``ConfigurationError`` naming every mismatch (the service must not start)."""
        found = self.problems(templates)
        if found:
            raise ConfigurationError(
                "the hooks, rules, services and card templates disagree, the service cannot "
                "start:\n- " + "\n- ".join(found)
            )

    def discovery(self, extension: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET /cds-services``: one entry per service; optional members omitted when empty."""
        services = []
        for service in self.services:
            entry: dict[str, Any] = {
                "hook": service.hook,
                "id": service.id,
                "title": service.title,
                "description": service.description,
                "prefetch": service.prefetch,
                "usageRequirements": service.usage_requirements,
                "extension": extension,
            }
            services.append({k: v for k, v in entry.items() if v})
        return {"services": services}

    def hook_names(self) -> Iterable[str]:
        return self.hooks.names()
