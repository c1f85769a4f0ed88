"""The launch configs (configs/NAME.py with get_config()), shipped with the
package: `dash-jax --config NAME` or `--config configs/NAME.py`."""
