"""app.messages: errors are plain text safe as HTML (no `&lt;` for API clients, no tags for browsers) and name the
server's folders by role; the offline catalogue error reaches the handler's caller that way."""
from __future__ import annotations

import gradio as gr
import pytest

from app.handlers import Handlers
from app.messages import for_user, name_folders, plain
from app.settings import Settings
from app.tabs import user_error
from models.catalogue import cache_dir
from models.loader import models_dir
from tests.app_server import save_png, two_tone


def test_plain_text_has_no_tags_and_no_entities():
    text = plain("<urlopen error [Errno -3] x> & <script>alert(1)</script>")
    assert "<" not in text and ">" not in text and "&lt;" not in text
    assert text.startswith("‹urlopen error [Errno -3] x›") and "&" in text


def test_server_folders_are_named_by_role(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTBRUSH_CACHE", str(tmp_path / "cache" / "latentbrush"))
    target = cache_dir() / "ffhq-256.pkl"
    msg = name_folders(f"Download it elsewhere and put it at {target}")
    assert str(cache_dir()) not in msg
    assert msg.endswith("put it at the server's model download folder (ffhq-256.pkl)")
    assert name_folders(f"inside one of: {models_dir()}, {cache_dir()}.") == \
        "inside one of: the server's models folder, the server's model download folder."
    # a look-alike folder is not the download folder (here it lies in the temporary folder)
    assert "download folder" not in name_folders(f"at {cache_dir()}-old/x")


def test_user_error_is_plain():
    assert user_error("a <b> & c").message == "a ‹b› & c"
    assert for_user("x") == "x"


def test_offline_catalogue_model_error_is_neither_escaped_nor_names_folders(tmp_path, network_attempts):
    handlers = Handlers(Settings(temp_dir=tmp_path / "lb"))
    photo = str(save_png(tmp_path / "p.png", two_tone()))
    controls = ("w+", 4, 0.1, 0.0, 1.0, 0.0, "none", 0.0, False, "adam", 0, 2)
    with pytest.raises(gr.Error) as ei:
        list(handlers.reconstruct(photo, False, "afhqcat", *controls))
    msg = ei.value.message
    assert network_attempts and "could not download" in msg
    assert "&lt;" not in msg and "&gt;" not in msg and "<" not in msg
    assert "‹urlopen error" in msg
    assert str(cache_dir()) not in msg and "the server's model download folder (afhqcat.pkl)" in msg
