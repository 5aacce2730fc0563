"""Contract tests: scikit-learn's checks, the plugin author kit, properties,
fuzzing, the bad-input table, the import graph."""
