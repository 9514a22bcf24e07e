"""/docs: the API reference, rendered on the server from the app's own OpenAPI (no CDN, works offline)."""

from __future__ import annotations

from html import escape

from flask import Blueprint, current_app

blp = Blueprint("docs", __name__)


@blp.route("/docs")
def docs() -> str:
    """Every operation with its summary, parameters and responses."""
    spec = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    rows = []
    for path, operations in sorted(spec.get("paths", {}).items()):
        for method, operation in operations.items():
            if method == "parameters":
                continue
            params = ", ".join(escape(p["name"]) for p in operation.get("parameters", []))
            codes = ", ".join(escape(str(code)) for code in operation.get("responses", {}))
            rows.append(f"<tr><td><code>{escape(method.upper())}</code></td><td><code>{escape(path)}</code></td>"
                        f"<td>{escape(operation.get('summary', ''))}</td><td>{params}</td><td>{codes}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Handoff API</title>"
            "<style>body{font-family:system-ui;margin:2rem}td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;"
            "text-align:left}</style></head><body><h1>Handoff API</h1><p>The machine-readable description is at "
            "<a href='/openapi.json'>/openapi.json</a>. Authenticate with <code>Authorization: Bearer hk_...</code>."
            "</p><table><tr><th>method</th><th>path</th><th>what it does</th><th>parameters</th><th>responses</th>"
            "</tr>" + "".join(rows) + "</table></body></html>")
