"""The task pack's lm-eval YAML templates (data shipped with the package)."""
