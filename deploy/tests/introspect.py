"""Describe services as the deployment sees them, as JSON on stdout:
`python deploy/tests/introspect.py referrals providers cohorts notifications`.

With a JSON object on stdin ({service: {where: environment}}), also builds each service's
settings from each environment and reports what fails. Run outside the test process: the services are separate programs whose table definitions
clash in one interpreter, so the SQLModel metadata is emptied before each. Gives the settings' default port, every environment
variable the settings class reads, the status of the probe paths, and its durable subscriptions
(captured from the real `create_app`, whatever the service's consumers module looks like).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

SETTINGS = {
    "referrals": "ReferralsSettings",
    "providers": "ProvidersSettings",
    "cohorts": "CohortsSettings",
    "notifications": "NotificationsSettings",
    "insights": "InsightsSettings",
}


def env_names(settings_cls) -> list[str]:
    prefix = (settings_cls.model_config.get("env_prefix") or "").upper()
    names = []
    for field_name, field in settings_cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.append(prefix + field_name.upper())
        elif isinstance(alias, str):
            names.append(alias.upper())
        else:  # AliasChoices
            names.extend(str(choice).upper() for choice in getattr(alias, "choices", []))
    return sorted(names)


def describe(service: str) -> dict:
    os.environ.setdefault("PATHWAYS_JWT_SECRET", "deploy-introspection-" + "x" * 32)
    from pathways_shared import runtime

    captured: dict = {}
    real_build_app = runtime.build_app

    def capturing_build_app(settings, **kwargs):
        captured["subscriptions"] = list(kwargs.get("subscriptions", ()))
        return real_build_app(settings, **kwargs)

    runtime.build_app = capturing_build_app
    config = importlib.import_module(f"{service}.config")
    settings_cls = getattr(config, SETTINGS[service])
    app_module = importlib.import_module(f"{service}.app")
    app_module.build_app = capturing_build_app  # if it imported the name before
    settings = settings_cls()
    app = app_module.create_app(settings)
    # The probe and metrics paths answer (the lifespan is not run: nothing connects).
    from fastapi.testclient import TestClient

    client = TestClient(app)
    probes = {path: client.get(path).status_code
              for path in ("/health/live", "/health/ready", "/metrics", "/no-such-path")}
    return {
        "service": service,
        "settings_class": SETTINGS[service],
        "port": settings_cls.model_fields["port"].default,
        "host_default": settings_cls.model_fields["host"].default,
        "env": env_names(settings_cls),
        "probes": probes,
        "subscriptions": [
            {"stream": s.stream, "durable": s.durable, "filter_subject": s.filter_subject}
            for s in captured.get("subscriptions", [])
        ],
    }


def build_settings(service: str, environments: dict[str, dict[str, str]]) -> dict[str, str]:
    """Build the service's settings from each environment a deployment gives it (alone: every
    other PATHWAYS_/NATS_/<SERVICE>_ variable removed): "ok" or the error."""
    settings_cls = getattr(importlib.import_module(f"{service}.config"), SETTINGS[service])
    own = ("PATHWAYS_", "NATS_", *(s.upper() + "_" for s in SETTINGS))
    results = {}
    for where, env in environments.items():
        saved = dict(os.environ)
        try:
            for key in [k for k in os.environ if k.startswith(own)]:
                del os.environ[key]
            os.environ.update(env)
            settings = settings_cls()
            results[where] = "ok" if settings.environment == "production" else (
                f"runs as {settings.environment}, not production")
        except (ValueError, TypeError) as exc:  # pydantic.ValidationError is a ValueError
            results[where] = str(exc)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return results


def main(services: list[str]) -> None:
    from sqlmodel import SQLModel

    environments = {} if sys.stdin.isatty() else json.loads(sys.stdin.read() or "{}")
    described = {}
    for service in services:
        SQLModel.metadata.clear()
        described[service] = describe(service)
        described[service]["settings_built"] = build_settings(service, environments.get(service, {}))
    print(json.dumps(described))


if __name__ == "__main__":
    main(sys.argv[1:])
