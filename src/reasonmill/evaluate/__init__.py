"""``reasonmill eval``: measure a model on reasoning benchmarks with the data's own verifiers.

Modules: ``protocol`` (per-benchmark defaults, the run's settings), ``items`` (benchmark
items as prompts, GPQA shuffle, content hashes), ``sampling`` (the generation client and
its cache), ``scoring`` (the verifiers), ``metrics`` (pass@1 with intervals, pass@k,
maj@n, rates), ``outputs`` (results, samples, manifest, table), ``responses`` (scoring
existing outputs), ``contamination`` (training-data cross-check), ``compare`` (two runs),
``run`` (the whole evaluation), ``cli`` (the command).
"""
