"""Error types for clipseek's boundaries. Each message names the thing involved and the reason."""

from __future__ import annotations


class ClipseekError(Exception):
    """Base class: an error clipseek reports to the user as it is."""


class MediaPathError(ClipseekError):
    """A path that is missing, unreadable, or outside the configured media folders."""


class VideoOpenError(ClipseekError):
    """ffprobe or ffmpeg could not read a file as a video; carries ffmpeg's stderr."""

    def __init__(self, path: str, reason: str, stderr: str = ""):
        self.path = path
        self.reason = reason
        self.stderr = stderr
        detail = f" (ffmpeg said: {stderr.strip().splitlines()[-1]})" if stderr.strip() else ""
        super().__init__(f"{path}: {reason}{detail}")


class ModelLoadError(ClipseekError):
    """A CLIP model or its weights could not be loaded."""


class QueryError(ClipseekError):
    """A search request that cannot be answered as asked (empty text, bad top_k, unknown video)."""


class FlowUnavailableError(ClipseekError):
    """The clipseek Flow cannot be reached at the configured address."""


class WorkspaceBusyError(ClipseekError):
    """Another process already writes to this index workspace."""


class ServiceUnavailableError(ClipseekError):
    """The Flow answered, but one of its services (``service``) is down; other endpoints may still work."""

    def __init__(self, message: str, service: str = ""):
        self.service = service
        super().__init__(message)


class AuthenticationError(ClipseekError):
    """The Flow refused the request: its API key is missing or wrong (CLIPSEEK_API_KEY)."""
