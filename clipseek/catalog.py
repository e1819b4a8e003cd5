"""Every settings dataclass of the project, by service: what the README's settings table documents."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = {
    "video_loader": "LoaderSettings",
    "image_encoder": "ImageEncoderSettings",
    "text_encoder": "TextEncoderSettings",
    "indexer": "IndexerSettings",
}


def service_settings(service: str) -> type:
    """The settings dataclass of ``services/<service>/executor.py`` (imported from its file)."""
    name = f"clipseek_service_{service}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "services" / service / "executor.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return getattr(module, SERVICES[service])


def all_settings() -> dict[str, type]:
    from clipseek.serve import ServeSettings

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
