"""Text for users and API clients: `for_user(text)` is plain text that is also safe as HTML, with the server's
folders named by their role instead of their path.

Gradio renders gr.Error / gr.Warning messages as HTML in the browser but hands API clients the same string as
it is, so an HTML-escaped message reaches them as `&lt;urlopen error ...&gt;`. Instead, the two characters
that could open a tag become look-alikes (‹ ›): the same readable text for both, and no markup from file names.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_ANGLES = str.maketrans({"<": "‹", ">": "›"})


def plain(text: str) -> str:
    """`text` with no `<` or `>`: nothing in it can become an HTML tag; everything else is left as it is."""
    return str(text).translate(_ANGLES)


def folder_roles() -> list[tuple[str, str]]:
    """(folder path, what it is for) for the server's folders, most specific first."""
    from models.catalogue import cache_dir
    from models.loader import models_dir

    from .settings import ROOT, default_temp_dir

    roles = [(cache_dir(), "the server's model download folder"), (models_dir(), "the server's models folder"),
             (default_temp_dir(), "the server's working folder")]
    gradio_cache = os.environ.get("GRADIO_TEMP_DIR")
    roles.append((Path(gradio_cache) if gradio_cache else Path(tempfile.gettempdir()) / "gradio",
                  "the server's file cache"))
    roles += [(ROOT, "the app's folder"), (Path(tempfile.gettempdir()), "the server's temporary folder"),
              (Path.home(), "the server's home folder")]
    seen: dict[str, str] = {}
    for folder, role in roles:
        for form in {str(folder), str(folder.resolve())}:
            if len(form) > 1:  # never "/"
                seen.setdefault(form.rstrip("/"), role)
    return sorted(seen.items(), key=lambda kv: -len(kv[0]))


def name_folders(text: str) -> str:
    """Replace the server's folder paths in `text` by their role: `/root/.cache/latentbrush/ffhq.pkl` becomes
    "the server's model download folder (ffhq.pkl)". A client has no use for the server's layout."""
    for folder, role in folder_roles():
        pattern = re.compile(re.escape(folder) + r"(?![\w-]|\.[\w-])(/[^\s,;:()'\"<>]*[^\s,;:()'\"<>.])?")

        def repl(m: re.Match, role: str = role) -> str:
            tail = (m.group(1) or "").strip("/")
            return f"{role} ({tail})" if tail else role
        text = pattern.sub(repl, text)
    return text


def for_user(text: str) -> str:
    """What a gr.Error / gr.Warning shows: folders named by role, plain text safe as HTML."""
    return plain(name_folders(str(text)))
