"""The README's settings table: every settings dataclass of the project, by service, with its defaults.

    python -m clipseek.engine.settings_table     # prints the table that README.md holds (tests/test_docs.py checks it)
"""

from __future__ import annotations

from clipseek.engine.services import SERVICES, service_settings


def all_settings() -> dict[str, type]:
    from clipseek.engine.serve import ServeSettings

    found = {service: service_settings(service) for service in SERVICES}
    found["clipseek serve"] = ServeSettings
    return found


def settings_markdown() -> str:
    """A markdown table of every setting: environment variable, service, type, default."""
    from clipseek.settings import describe

    rows = ["| variable | service | type | default |", "| --- | --- | --- | --- |"]
    for service, cls in all_settings().items():
        for env, kind, default in describe(cls):
            shown = ":".join(default) if isinstance(default, list) else default
            rows.append(f"| `{env}` | {service} | {kind} | `{shown}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_markdown())
