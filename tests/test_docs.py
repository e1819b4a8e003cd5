"""The README and the code agree: every setting is documented with its real default."""

import re

from conftest import REPO

from clipseek.engine.services import SERVICES
from clipseek.engine.settings_table import all_settings, settings_markdown


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_the_readme_settings_table_is_the_one_the_code_generates():
    text = readme()
    table = text[text.index("<!-- settings-table"):text.index("<!-- end settings-table")]
    assert settings_markdown() in table, "paste the table of `python -m clipseek.engine.settings_table` into README.md"


def test_every_service_has_an_executor_a_config_and_a_readme_naming_its_settings():
    settings = all_settings()
    for service in SERVICES:
        folder = REPO / "services" / service
        assert (folder / "executor.py").is_file() and (folder / "config.yml").is_file()
        text = (folder / "README.md").read_text()
        for field in settings[service].__dataclass_fields__:
            assert f"CLIPSEEK_{field.upper()}" in text, (service, field)


def test_the_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    text = readme()
    assert re.search(r"^make serve", text, re.M) and re.search(r"^make test", text, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
