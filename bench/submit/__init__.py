"""Submitting to RobustBench: what it accepts (rules), its file formats (fields), the model-zoo source
(source) and the filled issue template with the PR steps (guide). bench.export writes them."""
