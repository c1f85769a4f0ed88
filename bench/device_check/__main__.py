"""`python -m bench.device_check`: the entry point device_check.sh runs."""
from bench.device_check.cli import main

main()
