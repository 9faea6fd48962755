"""An app module whose import fails: ``serve tests.emulator.broken_app:app`` must say so and answer 502."""

raise RuntimeError("broken on purpose: this module cannot be imported")

app = None  # never reached
