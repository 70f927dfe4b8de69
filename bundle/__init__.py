"""Signed, incremental bundles that carry a mirror across an air gap on removable media."""
