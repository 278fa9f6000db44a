"""Helpers for the notebooks: show a package function's source next to the prose that explains it.

Used by every notebook, so that the lesson and the package can never drift apart.
"""
from __future__ import annotations

import inspect


def show_source(*objects) -> None:
    """Display the source code of functions or classes from `rlhf_lab`, highlighted."""
    from IPython.display import Markdown, display

    for obj in objects:
        module = inspect.getmodule(obj).__name__
        source = inspect.getsource(obj).rstrip()
        display(Markdown(f"```python\n# from {module}\n{source}\n```"))
