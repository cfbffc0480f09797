"""Proof under faults, load and hostile input (issue 17): see README.md beside this file.

A package, so that its modules import each other relatively both under pytest (as ``chaos.*``)
and from the long run (``python -m tests.chaos.soak``, as ``tests.chaos.*``).
"""
