"""What a person sees in a notebook: the parameter panel, explorers, figure display.

Imports the core only; a step's explorer logic lives with that step and reaches this layer as
plain callables and data.
"""
