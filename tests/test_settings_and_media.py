"""Settings precedence and the media-root guard."""

import os
from dataclasses import dataclass, field

import pytest

from clipseek.errors import MediaPathError
from clipseek.media.roots import iter_videos, resolve_media_path, resolve_roots
from clipseek.settings import describe, env_name, load_settings


@dataclass
class Example:
    port: int = 1
    ratio: float = 0.5
    name: str = "x"
    enabled: bool = False
    roots: list[str] = field(default_factory=lambda: ["."])
    maybe: str | None = None


def test_explicit_values_beat_the_environment_which_beats_defaults():
    env = {"CLIPSEEK_PORT": "7", "CLIPSEEK_ENABLED": "yes", "CLIPSEEK_ROOTS": "/a:/b,/c", "CLIPSEEK_RATIO": "2"}
    settings = load_settings(Example, {"port": 9, "name": None}, environ=env)
    assert settings == Example(port=9, ratio=2.0, name="x", enabled=True, roots=["/a", "/b", "/c"])
    assert load_settings(Example, environ={}) == Example()
    assert env_name("media_roots") == "CLIPSEEK_MEDIA_ROOTS"


def test_bad_values_and_unknown_settings_are_named():
    with pytest.raises(ValueError, match="CLIPSEEK_PORT must be int, got 'seven'"):
        load_settings(Example, environ={"CLIPSEEK_PORT": "seven"})
    with pytest.raises(ValueError, match="CLIPSEEK_ENABLED must be true or false"):
        load_settings(Example, environ={"CLIPSEEK_ENABLED": "maybe"})
    with pytest.raises(ValueError, match="unknown setting.*prot"):
        load_settings(Example, {"prot": 1}, environ={})


def test_describe_lists_env_names_types_and_defaults():
    rows = dict((name, (kind, default)) for name, kind, default in describe(Example))
    assert rows["CLIPSEEK_PORT"] == ("int", 1) and rows["CLIPSEEK_ROOTS"][1] == ["."]


@pytest.fixture()
def roots(tmp_path):
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "sub" / "a.mp4").write_bytes(b"x")
    (media / "b.MKV").write_bytes(b"x")
    (media / "notes.txt").write_text("x")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"x")
    os.symlink(secret, media / "link_out.mp4")
    os.symlink(media / "sub" / "a.mp4", media / "link_in.mp4")
    return media, secret, resolve_roots([str(media)])


def test_paths_inside_the_media_roots_resolve_and_relative_paths_are_looked_up_in_them(roots):
    media, _, resolved = roots
    assert resolve_media_path(str(media / "sub" / "a.mp4"), resolved) == (media / "sub" / "a.mp4").resolve()
    assert resolve_media_path("sub/a.mp4", resolved) == (media / "sub" / "a.mp4").resolve()
    assert resolve_media_path(str(media / "link_in.mp4"), resolved) == (media / "sub" / "a.mp4").resolve()


def test_paths_outside_dotdot_tricks_and_symlinks_out_are_refused(roots):
    media, secret, resolved = roots
    for uri in (str(secret), str(media / ".." / "secret.mp4"), "../secret.mp4", str(media / "link_out.mp4"),
                "/etc/passwd"):
        with pytest.raises(MediaPathError, match="outside the media folders"):
            resolve_media_path(uri, resolved)
    with pytest.raises(MediaPathError, match="no such file"):
        resolve_media_path(str(media / "missing.mp4"), resolved)
    with pytest.raises(MediaPathError, match="empty path"):
        resolve_media_path("  ", resolved)


def test_folder_listing_is_recursive_by_extension_and_skips_links_out(roots):
    media, _, resolved = roots
    names = sorted(p.name for p in iter_videos(media, resolved))
    assert names == ["a.mp4", "a.mp4", "b.MKV"]  # link_in resolves to sub/a.mp4; link_out is skipped
