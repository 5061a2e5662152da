"""``report.html``: ``report.md`` as one self-contained page (markdown-it-py; images embedded as data URIs)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1em 0; border: 1px solid #eee; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


def render_html(markdown: str, image_dir: Path) -> str:
    """The page for ``markdown``; every image it names is read from ``image_dir`` and embedded."""
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("src", _data_uri(image_dir / str(child.attrGet("src"))))
    title = next((t.content for t in tokens if t.type == "inline"), "Sweep report")
    body = md.renderer.render(tokens, md.options, {})
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def write_html(path: Path, markdown: str, image_dir: Path) -> Path:
    path.write_text(render_html(markdown, image_dir), encoding="utf-8")
    return path


def _data_uri(image: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(image.suffix, "image/png")
    return f"data:{mime};base64,{base64.b64encode(image.read_bytes()).decode('ascii')}"
