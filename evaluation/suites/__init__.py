"""Suite definitions (YAML data shipped with the package); loaded by evaluation.suite."""
