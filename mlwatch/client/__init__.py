"""The in-process client: everything that runs inside a model server (standard library only).

Public names are re-exported by :mod:`mlwatch`; the modules here are internal.
"""
