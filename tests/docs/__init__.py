"""The user-facing docs: examples run as pasted, diagrams up to date."""
