"""fastproxy's benchmark harness: `make bench` (or `python bench/run.py --help`)."""
