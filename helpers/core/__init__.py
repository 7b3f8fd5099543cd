"""The contracts every step shares; this layer imports nothing above it.

Parameter registry (``config``), run folder and artifacts (``artifacts``), data sources and
built-ins (``datasets``), the one train/test split (``split``), the KPI contract and metrics
(``kpis``), model families (``families``), feature kinds and the one input conversion
(``features``), the step-2 hand-over (``prepared``), model files (``modelio``), content hashes
(``hashing``), machine facts and the package lock (``system``), documents, errors and resource paths.
"""
