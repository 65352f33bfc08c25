"""Metrics of a generator against real images: FID and KID in Inception's features, SWD,
and the domain, attribute and class metrics of the networks trained here.

This file imports no JAX: its names are flags' choices (config.py).
"""

# --fid_resize: how images reach Inception's 299x299 (inception.py implements each).
RESIZE_MODES = ('pytorch_fid', 'clean_fid')
