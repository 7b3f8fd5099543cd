"""Orchestration: the papermill engine, the runner, resume, the report and the ``playbook`` CLI.

The top layer: it may import every other layer; nothing imports it (the report notebook does).
"""
