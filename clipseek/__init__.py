"""clipseek: find the moment in a video library that matches a sentence."""

__version__ = "0.1.0"
