"""The model: the manifest as frozen dataclasses, references, durations, vocabularies, YAML text helpers.

Pure data and pure functions: no I/O. Defaults live in the dataclasses and only
there (``launcher.model.settings``); the manifest package reads YAML into them.
"""
