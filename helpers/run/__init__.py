"""Orchestration: the papermill engine, the runner, resume, the report and the ``playbook`` CLI.

The top layer: it may import every other layer; nothing imports it (the report notebook does).
"""
import sys

# nbformat imports jsonschema, whose optional IRI format checker ``rfc3987_syntax`` builds a lark
# grammar at import: 2.3 s on this machine, on every `playbook` command, for a format no notebook
# schema uses (python-jsonschema/jsonschema#1428). A None entry makes its import fail, which
# jsonschema handles by leaving that one checker out.
sys.modules.setdefault("rfc3987_syntax", None)
