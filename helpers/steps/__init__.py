"""One module or small package per lifecycle step; steps import the core, never each other.

``vision`` (1), ``foundation`` (2: ``data``, ``quality``), ``stack`` (3), ``modeling`` (4),
``operations`` (5: ``deployment``, ``monitoring``, ``readiness``). Each exposes the step protocol
(see ``helpers.run.registry``).
"""
